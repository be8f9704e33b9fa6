"""Stage 1, data: datasets by name and the deterministic train/search/val/test splits.

- :mod:`dyce.data.splits`: dataset facts, pools (``digits``, ``cifar10``, ``cifar100``,
  ``imagefolder``), stratified splits written once as JSON, ``eval_transform``.
"""

from dyce.data.splits import (
    DATASETS,
    SPLIT_NAMES,
    DatasetFacts,
    DigitsPool,
    SplitDataset,
    dataset_facts,
    eval_transform,
    load_split,
    load_splits,
    open_pool,
    prepare_splits,
)

__all__ = [
    "DATASETS",
    "SPLIT_NAMES",
    "DatasetFacts",
    "DigitsPool",
    "SplitDataset",
    "dataset_facts",
    "eval_transform",
    "load_split",
    "load_splits",
    "open_pool",
    "prepare_splits",
]
