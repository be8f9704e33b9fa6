"""Datasets and deterministic splits.

Five datasets are known: ``digits`` (scikit-learn's bundled 8x8 handwritten digits, offline),
``digits_deformed`` (the same digits, each with label-preserving deformed copies; see
:mod:`dyce.data.deformed_digits`), ``cifar10`` and ``cifar100`` (torchvision) and ``imagefolder`` (an
ImageNet-style local folder with ``train/`` and ``val/`` class sub-folders).

A *splits* description (a JSON-able dict, written by ``dyce prepare-data``) names the dataset,
where it lives, the image size and, for each of the four splits ``train`` (backbone and exit
training), ``search`` (where exit configurations are searched), ``calib`` (where an operating
point is chosen with a guarantee, ``dyce select``; used by nothing else) and ``val`` (final
evaluation), the *pool* it is drawn from and the list of indices into that pool. A sample's index
in its pool is its ``sample_id`` in the records. Pools: ``all`` for digits (val is a held-out
stratified fraction), ``train``/``test`` for CIFAR and ``train``/``val`` for image folders (val
is the official split). ``search`` is either the training indices themselves
(``search_split="train"``, the original DyCE behaviour) or a stratified held-out part of the
training pool (``heldout``); ``calib`` is always held out of the training pool (empty when
``calib_fraction`` is 0). For ``digits_deformed`` every split is drawn over *source images* and
then holds all copies of its sources, so no deformed copy of a val, calib or search image is
trained on. Splits files written before ``calib`` existed read as having an empty one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dyce.data.normalization import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DIGITS_MEAN,
    DIGITS_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from dyce.errors import DyceError

SPLITS_FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "search", "calib", "val")
SEARCH_SPLIT_CHOICES = ("heldout", "train")



@dataclass(frozen=True)
class DatasetFacts:
    """What is known about a dataset before opening it."""

    in_channels: int
    default_image_size: int
    pools: tuple[str, str]  # (pool of train/search, pool of val)
    needs_root: bool


DATASETS: dict[str, DatasetFacts] = {
    "digits": DatasetFacts(1, 8, ("all", "all"), needs_root=False),
    "digits_deformed": DatasetFacts(1, 8, ("all", "all"), needs_root=False),
    "cifar10": DatasetFacts(3, 32, ("train", "test"), needs_root=True),
    "cifar100": DatasetFacts(3, 32, ("train", "test"), needs_root=True),
    "imagefolder": DatasetFacts(3, 224, ("train", "val"), needs_root=True),
}


def dataset_facts(name: str) -> DatasetFacts:
    """Facts of dataset ``name``; unknown names raise :class:`DyceError`."""
    if name not in DATASETS:
        raise DyceError(
            f"unknown dataset '{name}' (known: {', '.join(DATASETS)})", field="dataset"
        )
    return DATASETS[name]


# --------------------------------------------------------------------------- pools


class DigitsPool(Dataset):
    """scikit-learn's digits as float tensors ``(1, S, S)``, normalised; labels 0..9.

    ``image_size`` other than 8 resizes bilinearly (for backbones that need larger inputs).
    """

    def __init__(self, image_size: int = 8):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
        if image_size != images.shape[-1]:
            images = torch.nn.functional.interpolate(
                images, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        self.images = (images - DIGITS_MEAN) / DIGITS_STD
        self.targets = [int(label) for label in digits.target]
        self.classes = [str(label) for label in digits.target_names]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


def _image_transform(dataset: str, image_size: int, train: bool) -> Callable:
    """torchvision transform of a PIL image to a normalised float tensor ``(3, S, S)``."""
    from torchvision import transforms

    if dataset == "imagefolder":
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        if train:
            steps = [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
        else:
            resize = int(round(image_size / 0.875))
            steps = [transforms.Resize(resize), transforms.CenterCrop(image_size)]
        return transforms.Compose([*steps, transforms.ToTensor(), normalize])
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if dataset == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    steps = [] if image_size == 32 else [transforms.Resize(image_size)]
    if train:
        steps += [
            transforms.RandomCrop(image_size, padding=image_size // 8),
            transforms.RandomHorizontalFlip(),
        ]
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])


def eval_transform(
    dataset: str | Mapping[str, Any],
    image_size: int | tuple[int, int] | None = None,
    in_channels: int | None = None,
) -> Callable:
    """Evaluation-time transform: PIL image -> normalised float tensor ``(C, H, W)``.

    The preprocessing of the dataset's val split, for images from elsewhere. ``dataset`` is a
    dataset name or a splits description (whose ``dataset``, ``image_size`` and ``in_channels``
    are the defaults). ``image_size`` is ``S`` or ``(H, W)`` (default: the dataset's);
    ``in_channels`` matters for digits only (default 1). Digits: resized, pixels scaled to
    ``[0, 1]`` and standardised like :class:`DigitsPool`; the others: as :func:`open_pool`
    without augmentation (square sizes only). Unknown datasets raise :class:`DyceError`.
    """
    from torchvision import transforms

    if isinstance(dataset, Mapping):
        image_size = dataset.get("image_size") if image_size is None else image_size
        in_channels = dataset.get("in_channels") if in_channels is None else in_channels
        dataset = dataset["dataset"]
    facts = dataset_facts(dataset)
    size = facts.default_image_size if image_size is None else image_size
    size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(size)
    if dataset in ("digits", "digits_deformed"):  # pixels scaled to [0, 1], then standardised
        channels = facts.in_channels if in_channels is None else int(in_channels)
        return transforms.Compose([
            transforms.Resize(size, antialias=True), transforms.ToTensor(),
            transforms.Normalize([DIGITS_MEAN] * channels, [DIGITS_STD] * channels),
        ])
    if size[0] != size[1]:
        raise DyceError(f"square inputs only for {dataset}, got {size}", field="input_size")
    return _image_transform(dataset, size[0], train=False)


def _require_root(dataset: str, root: str | os.PathLike | None, download: bool) -> Path:
    if root is None:
        raise DyceError(f"dataset '{dataset}' needs a data folder (--root)", field="root")
    path = Path(root)
    if not path.is_dir() and not download:
        raise DyceError(
            "data folder not found" + ("" if dataset == "imagefolder" else "; pass --download "
                                       "to fetch the dataset there"),
            path=path, field="root",
        )
    return path


def open_pool(
    dataset: str,
    pool: str,
    *,
    root: str | os.PathLike | None = None,
    image_size: int | None = None,
    train_transforms: bool = False,
    download: bool = False,
    transform: Callable | None = None,
    copies: int | None = None,
    deform_seed: int = 0,
) -> Dataset:
    """Open one pool of ``dataset``: a torch Dataset of ``(image (C, S, S) float, label int)``.

    ``train_transforms`` adds augmentation (random crop and flip; none for digits).
    ``transform`` (PIL image -> tensor) replaces the dataset's preprocessing (CIFAR and image
    folders), e.g. a pretrained model's own (:func:`dyce.network.timm_backbones.model_transform`).
    ``copies`` and ``deform_seed``: versions per source image and the seed of their deformations
    (``digits_deformed`` only; default :data:`dyce.data.deformed_digits.DEFAULT_COPIES`).
    Downloads only when ``download`` is true; otherwise a missing or empty ``root`` raises
    :class:`DyceError` naming it.
    """
    facts = dataset_facts(dataset)
    size = facts.default_image_size if image_size is None else int(image_size)
    if size < 1:
        raise DyceError(f"image size must be positive, got {size}", field="image_size")
    if dataset == "digits":
        return DigitsPool(size)
    if dataset == "digits_deformed":
        from dyce.data.deformed_digits import DEFAULT_COPIES, DeformedDigitsPool

        copies = DEFAULT_COPIES if copies is None else int(copies)
        if copies < 1:
            raise DyceError(f"must be at least 1, got {copies}", field="copies")
        return DeformedDigitsPool(size, copies, deform_seed)
    path = _require_root(dataset, root, download)
    if transform is None:
        transform = _image_transform(dataset, size, train_transforms)
    if dataset in ("cifar10", "cifar100"):
        from torchvision.datasets import CIFAR10, CIFAR100

        cls = CIFAR10 if dataset == "cifar10" else CIFAR100
        try:
            # torchvision checks every batch file's MD5 against the official release before
            # reading it, so only the published files are ever unpickled.
            return cls(str(path), train=(pool == "train"), transform=transform, download=download)
        except RuntimeError as error:
            raise DyceError(
                f"no usable {dataset} data ({error})", path=path, field="root"
            ) from error
    from torchvision.datasets import ImageFolder

    folder = path / pool
    if not folder.is_dir():
        raise DyceError(f"missing '{pool}/' sub-folder of class folders", path=path, field="root")
    try:
        return ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, RuntimeError) as error:
        raise DyceError(f"not an image folder: {error}", path=folder, field="root") from error


def pool_targets(pool: Dataset) -> np.ndarray:
    """int64 ``(N,)``: the label of every sample of a pool, without decoding images."""
    return np.asarray(pool.targets, dtype=np.int64)


# --------------------------------------------------------------------------- splits


def _stratified_holdout(
    indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int, field: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, held out), the held-out part a stratified ``fraction``."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise DyceError(f"must lie strictly between 0 and 1, got {fraction}", field=field)
    try:
        kept, held = train_test_split(
            indices, test_size=fraction, stratify=labels[indices], random_state=seed
        )
    except ValueError as error:
        raise DyceError(f"cannot hold out a stratified {fraction}: {error}", field=field) from error
    return np.sort(kept), np.sort(held)


def prepare_splits(
    dataset: str,
    *,
    root: str | os.PathLike | None = None,
    seed: int,
    val_fraction: float = 0.2,
    search_split: str = "heldout",
    search_fraction: float = 0.2,
    calib_fraction: float = 0.0,
    download: bool = False,
    image_size: int | None = None,
    copies: int | None = None,
) -> dict[str, Any]:
    """Deterministic train/search/calib/val splits of ``dataset`` from ``seed`` (a JSON-able dict).

    ``val_fraction`` applies to digits only (CIFAR and image folders use their official
    test/val split). ``search_split="heldout"`` holds out a stratified ``search_fraction`` of the
    training pool for the search; ``"train"`` searches on the training indices themselves.
    ``calib_fraction`` (in ``[0, 1)``; default 0: no calib split) of the training pool is held
    out, stratified, for calibration, after the search split (which stays what it was without a
    calib split).
    ``copies``: versions per source image of ``digits_deformed`` (every split is drawn over
    source images, then holds all their copies).
    """
    facts = dataset_facts(dataset)
    if search_split not in SEARCH_SPLIT_CHOICES:
        raise DyceError(
            f"must be one of {', '.join(SEARCH_SPLIT_CHOICES)}, got '{search_split}'",
            field="search_split",
        )
    if not (0.0 <= calib_fraction < 1.0):
        raise DyceError(f"must lie in [0, 1), got {calib_fraction}", field="calib_fraction")
    held_out = search_fraction if search_split == "heldout" else 0.0
    if calib_fraction > 0 and held_out + calib_fraction >= 1.0:
        raise DyceError(f"search_fraction {search_fraction} + calib_fraction {calib_fraction} "
                        "leave no training samples", field="calib_fraction")
    size = facts.default_image_size if image_size is None else int(image_size)
    deformed = dataset == "digits_deformed"
    train_pool_name, val_pool_name = facts.pools
    train_pool = open_pool(dataset, train_pool_name, root=root, image_size=size,
                           download=download, copies=copies, deform_seed=seed)
    labels = train_pool.source_targets if deformed else pool_targets(train_pool)
    if dataset in ("digits", "digits_deformed"):
        train_idx, val_idx = _stratified_holdout(
            np.arange(len(labels)), labels, val_fraction, seed, "val_fraction"
        )
        val_len = len(train_pool)
    else:
        val_pool = open_pool(dataset, val_pool_name, root=root, image_size=size, download=download)
        val_idx = np.arange(len(val_pool))
        val_len = len(val_pool)
        if dataset == "imagefolder" and list(val_pool.classes) != list(train_pool.classes):
            raise DyceError(
                "val/ and train/ have different class folders", path=root, field="classes"
            )
        train_idx = np.arange(len(labels))
    if search_split == "heldout":
        train_idx, search_idx = _stratified_holdout(
            train_idx, labels, search_fraction, seed + 1, "search_fraction"
        )
    calib_idx = np.empty(0, dtype=np.int64)
    if calib_fraction > 0:
        train_idx, calib_idx = _stratified_holdout(
            train_idx, labels, calib_fraction / (1.0 - held_out), seed + 2, "calib_fraction"
        )
    if search_split != "heldout":
        search_idx = train_idx
    warnings = []
    if dataset == "imagefolder" and image_size is None:
        warnings.append(implied_size_warning(train_pool, size))
    indices = {"train": train_idx, "search": search_idx, "calib": calib_idx, "val": val_idx}
    if deformed:
        from dyce.data.deformed_digits import expand_sources

        indices = {name: expand_sources(idx, train_pool.copies) for name, idx in indices.items()}
    splits = {
        "format_version": SPLITS_FORMAT_VERSION,
        "dataset": dataset,
        "root": None if root is None or facts.needs_root is False else str(root),
        "image_size": size,
        "in_channels": facts.in_channels,
        "num_classes": len(train_pool.classes),
        "classes": [str(name) for name in train_pool.classes],
        "seed": int(seed),
        "val_fraction": float(val_fraction) if dataset in ("digits", "digits_deformed") else None,
        "search_split": search_split,
        "search_fraction": float(search_fraction) if search_split == "heldout" else None,
        "calib_fraction": float(calib_fraction),
        "pools": {"train": train_pool_name, "search": train_pool_name, "calib": train_pool_name,
                  "val": val_pool_name},
        "pool_sizes": {train_pool_name: len(train_pool), val_pool_name: val_len},
        "splits": {name: [int(i) for i in idx] for name, idx in indices.items()},
        "warnings": warnings,
    }
    if deformed:
        splits["copies"] = train_pool.copies
    return splits


def implied_size_warning(pool: Dataset, size: int) -> str:
    """The warning of an image folder given no ``image_size``: its images are resized to the
    default ``size``, which is silently wrong for e.g. 32 px images (names the first one's)."""
    from PIL import Image

    first = pool.samples[0][0] if getattr(pool, "samples", None) else None
    native = ""
    if first is not None:
        try:
            with Image.open(first) as image:
                native = f" (the first, {first}, is {image.width}x{image.height} px)"
        except OSError:
            native = ""
    return (f"no image_size given: every image is resized to the default {size} px{native}; "
            "give image_size to choose the size the backbone is trained and run at")


def load_splits(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Read and check a splits description (a path to SPLITS.json or the dict itself)."""
    path = None
    if isinstance(source, Mapping):
        splits = dict(source)
    else:
        path = Path(source)
        try:
            splits = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise DyceError("file not found", path=path) from error
        except (OSError, ValueError) as error:
            raise DyceError(f"not a JSON file: {error}", path=path) from error
    if not isinstance(splits, dict):
        raise DyceError("not a splits description (expected a JSON object)", path=path)
    required = ("dataset", "image_size", "in_channels", "num_classes", "seed", "pools", "splits")
    for key in required:
        if key not in splits:
            raise DyceError("missing", path=path, field=key)
    if splits.get("format_version", SPLITS_FORMAT_VERSION) != SPLITS_FORMAT_VERSION:
        raise DyceError(
            f"unsupported version {splits['format_version']}", path=path, field="format_version"
        )
    if splits["dataset"] not in DATASETS:
        raise DyceError(f"unknown dataset '{splits['dataset']}'", path=path, field="dataset")
    if isinstance(splits["splits"], dict) and "calib" not in splits["splits"]:
        # Written before the calib split existed: an empty one from the training pool.
        splits["splits"] = {**splits["splits"], "calib": []}
        if isinstance(splits["pools"], dict) and "train" in splits["pools"]:
            splits["pools"] = {**splits["pools"], "calib": splits["pools"]["train"]}
    for name in SPLIT_NAMES:
        indices = splits["splits"].get(name) if isinstance(splits["splits"], dict) else None
        if not isinstance(indices, list) or not all(isinstance(i, int) for i in indices):
            raise DyceError("must be a list of integer indices", path=path, field=f"splits.{name}")
        if indices and min(indices) < 0:
            raise DyceError("negative sample index", path=path, field=f"splits.{name}")
        if name not in splits["pools"]:
            raise DyceError("missing", path=path, field=f"pools.{name}")
    splits["_source"] = None if path is None else str(path)
    return splits


class SplitDataset(Dataset):
    """One split of a pool: item ``i`` is ``(image (C, S, S) float, label int, sample_id int)``."""

    def __init__(self, pool: Dataset, indices: list[int], targets: np.ndarray):
        self.pool = pool
        self.sample_ids = np.asarray(indices, dtype=np.int64)
        self.labels = targets[self.sample_ids]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int, int]:
        sample_id = int(self.sample_ids[item])
        image, label = self.pool[sample_id]
        return image, int(label), sample_id


def load_split(
    splits: str | os.PathLike | Mapping[str, Any],
    split: str,
    *,
    train_transforms: bool = False,
    transform: Callable | None = None,
) -> SplitDataset:
    """The torch Dataset of one split (``train``, ``search``, ``calib`` or ``val``) of a splits
    description.

    Items are ``(image, label, sample_id)``; ``train_transforms`` adds augmentation;
    ``transform`` replaces the dataset's preprocessing (see :func:`open_pool`). An empty split
    (e.g. ``calib`` of a splits file without one) raises :class:`DyceError`.
    """
    info = load_splits(splits)
    where = info["_source"]
    if split not in SPLIT_NAMES:
        raise DyceError(
            f"unknown split '{split}' (known: {', '.join(SPLIT_NAMES)})", path=where, field="split"
        )
    pool = open_pool(
        info["dataset"], info["pools"][split], root=info.get("root"),
        image_size=info["image_size"], train_transforms=train_transforms, transform=transform,
        copies=info.get("copies"), deform_seed=int(info["seed"]),
    )
    pool_name = info["pools"][split]
    expected_size = (info.get("pool_sizes") or {}).get(pool_name)
    if expected_size is not None and expected_size != len(pool):
        raise DyceError(
            f"pool '{pool_name}' had {expected_size} samples when the splits were made, the data "
            f"at {info.get('root')} has {len(pool)}", path=where, field="pool_sizes",
        )
    indices = info["splits"][split]
    if not indices:
        raise DyceError(f"split '{split}' is empty (prepare the data with a "
                        f"{split}_fraction above 0)", path=where, field=f"splits.{split}")
    if indices and max(indices) >= len(pool):
        raise DyceError(
            f"index {max(indices)} out of range for {len(pool)} samples of pool "
            f"'{info['pools'][split]}'", path=where, field=f"splits.{split}",
        )
    targets = pool_targets(pool)
    if int(targets.max(initial=0)) >= info["num_classes"]:
        raise DyceError(
            f"data has labels up to {int(targets.max())} but num_classes is "
            f"{info['num_classes']}", path=where, field="num_classes",
        )
    return SplitDataset(pool, indices, targets)
