"""Stage 1, data: datasets by name and the deterministic train/search/calib/val splits.

- :mod:`dyce.data.splits`: dataset facts, pools (``digits``, ``digits_deformed``, ``cifar10``,
  ``cifar100``, ``imagefolder``), stratified splits written once as JSON, ``eval_transform``.
- :mod:`dyce.data.deformed_digits`: the digits enlarged by label-preserving deformations.
- :mod:`dyce.data.shards`: shard ``i`` of ``K`` of a split (batch-aligned sample ranges) for
  passes run as several jobs, and joining record shards.
"""

from dyce.data.deformed_digits import DeformedDigitsPool
from dyce.data.shards import Shard, parse_shard, shard_range
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
    "DeformedDigitsPool",
    "DigitsPool",
    "Shard",
    "SplitDataset",
    "dataset_facts",
    "eval_transform",
    "load_split",
    "load_splits",
    "open_pool",
    "parse_shard",
    "prepare_splits",
    "shard_range",
]
