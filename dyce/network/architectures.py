"""Backbone names known without importing torch (the workflow checks configs with them)."""

SMALL_RESNET_BLOCKS: dict[str, int] = {"small_resnet8": 1, "small_resnet14": 2, "small_resnet20": 3}
"""Small CIFAR-style ResNets: name -> BasicBlocks per stage (3 stages, widths 16, 32, 64)."""
