"""Feature cache: every tap's pooled feature vector and the final logits of one split.

Exit heads see a tap only through its global average pool (:mod:`dyce.network.exit_heads`), and the backbone
is frozen while they train. One backbone pass over a split can therefore store what every head
will ever see: for every sample the pooled vector ``(C_p,)`` of every tap ``p`` and the final
head's logits ``(C,)`` (the distillation teacher, and the final head's record). Training the
heads for E epochs then never runs the backbone again, and recording the exits on a cached split
runs the heads alone. The price: the cache is made with the evaluation transforms, so exits
trained from it see no per-epoch augmentation.

A cache is a folder (written to a temporary sibling and renamed when complete)::

    meta.json          format, model, dataset, split, taps, tap layouts and widths, classes,
                       sample count, feature dtype, backbone digest, shard (or null)
    sample_ids.npy     int64 (N,)     index of each sample in its pool, in split order
    labels.npy         int64 (N,)
    final.npy          float32 (N, C) logits of the final head
    tap{p}.npy         float32 or float16 (N, C_p), pooled features of tap p

The arrays are plain ``.npy`` files, read memory-mapped with ``allow_pickle=False``, so a
cache larger than memory trains through the page cache. float32 (the default) gives the heads
exactly the values they see through the network; float16 halves the size (ImageNet-train
features of ResNet-50's 16 taps: 15 104 values per image, 77 GB in float32, 39 GB in float16)
at a relative rounding error of at most 2^-11 per value, which training can amplify (see
docs/benchmarks.md); values beyond float16's range are refused.
``backbone_digest`` (SHA-256 of the backbone's state dict) ties a cache to the weights it came
from: training or recording from a cache of another backbone is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Subset
from tqdm.auto import tqdm

from dyce.data.shards import SHARD_KEY, Shard, check_shard_set, shard_description, shard_range
from dyce.errors import DyceError
from dyce.io import atomic_dir, plain_value
from dyce.network.device import autocast, loader_workers, pin_memory, resolve_device
from dyce.network.exit_heads import GlobalPool, feature_channels

FORMAT = "dyce-features"
FORMAT_VERSION = 1
META_FILE = "meta.json"
DTYPES: tuple[str, ...] = ("float16", "float32")
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def backbone_digest(backbone: nn.Module) -> str:
    """SHA-256 (hex) of a module's state dict: names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        value = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{value.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class FeatureCache:
    """An opened cache: ``meta`` (the JSON), memory-mapped arrays, and where it lives.

    ``taps[p]`` float16/float32 ``(N, C_p)``; ``final`` float32 ``(N, C)``; ``labels`` and
    ``sample_ids`` int64 ``(N,)``.
    """

    path: Path
    meta: dict[str, Any]
    sample_ids: np.ndarray
    labels: np.ndarray
    final: np.ndarray
    taps: tuple[np.ndarray, ...]

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])


def _load_array(path: Path, field: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DyceError("missing", path=path, field=field) from None
    except (OSError, ValueError) as error:
        raise DyceError(f"not a readable .npy array ({error})", path=path, field=field) from None
    if array.shape != shape or array.dtype != np.dtype(dtype):
        raise DyceError(f"has {array.dtype} {array.shape}; the cache's meta.json says "
                        f"{dtype} {shape}", path=path, field=field)
    return array


def open_feature_cache(path: str | os.PathLike) -> FeatureCache:
    """Open (memory-map) and check the cache folder written by :func:`cache_features`."""
    folder = Path(path)
    meta_path = folder / META_FILE
    if not folder.is_dir():
        raise DyceError("feature cache folder not found", path=folder)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise DyceError("missing (not a dyce feature cache)", path=meta_path) from None
    except (OSError, ValueError) as error:
        raise DyceError(f"not valid JSON ({error})", path=meta_path) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DyceError(f"not a dyce feature cache (no format '{FORMAT}')", path=meta_path,
                        field="format")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DyceError(f"is {meta.get('format_version')!r}; this dyce reads {FORMAT_VERSION}",
                        path=meta_path, field="format_version")
    for key in ("num_samples", "num_classes", "taps", "tap_channels", "tap_layouts", "dtype",
                "model", "dataset", "split", "backbone_digest"):
        if key not in meta:
            raise DyceError("missing", path=meta_path, field=key)
    if meta["dtype"] not in DTYPES:
        raise DyceError(f"must be one of {', '.join(DTYPES)}", path=meta_path, field="dtype")
    if len(meta["tap_channels"]) != len(meta["taps"]):
        raise DyceError("needs one width per tap", path=meta_path, field="tap_channels")
    n, classes = int(meta["num_samples"]), int(meta["num_classes"])
    return FeatureCache(
        path=folder, meta=meta,
        sample_ids=_load_array(folder / "sample_ids.npy", "sample_ids", (n,), "int64"),
        labels=_load_array(folder / "labels.npy", "labels", (n,), "int64"),
        final=_load_array(folder / "final.npy", "final", (n, classes), "float32"),
        taps=tuple(
            _load_array(folder / f"tap{p}.npy", f"tap{p}", (n, int(width)), meta["dtype"])
            for p, width in enumerate(meta["tap_channels"])
        ),
    )


def check_cache_fits(
    cache: FeatureCache, net: nn.Module, *, split: str | None = None,
    sample_ids: Sequence[int] | None = None,
) -> None:
    """Raise :class:`DyceError` unless ``cache`` was made by ``net``'s backbone and taps (and,
    when given, on ``split`` with exactly ``sample_ids`` in that order)."""
    where = cache.path / META_FILE
    meta = cache.meta
    if meta.get(SHARD_KEY):
        raise DyceError("is one shard of a cache; join the shards first (dyce concat-features)",
                        path=where, field=SHARD_KEY)
    expected = {"taps": list(net.tap_nodes), "tap_layouts": list(net.tap_layouts),
                "num_classes": int(net.num_classes)}
    for key, value in expected.items():
        if meta[key] != value:
            raise DyceError(f"is {meta[key]!r}, the network has {value!r}", path=where, field=key)
    if meta["backbone_digest"] != backbone_digest(net.backbone):
        raise DyceError("the cache was made with other backbone weights; rebuild it",
                        path=where, field="backbone_digest")
    if split is not None and meta["split"] != split:
        raise DyceError(f"is '{meta['split']}', expected '{split}'", path=where, field="split")
    if sample_ids is not None and not np.array_equal(cache.sample_ids, np.asarray(sample_ids)):
        raise DyceError("the cached samples are not those of the split in SPLITS.json",
                        path=cache.path / "sample_ids.npy", field="sample_ids")


class CachedBatches(Dataset):
    """A cache as a dataset of *batches*: item ``indices`` (a list) is
    ``((pooled_0 (B, C_0), …, pooled_{P-2}), final_logits (B, C)), labels (B,), sample_ids (B,)``
    as float32/int64 tensors. Use with a batch sampler (:func:`epoch_loader`)."""

    def __init__(self, cache: FeatureCache):
        self.cache = cache

    def __len__(self) -> int:
        return self.cache.num_samples

    def __getitem__(self, indices: Sequence[int]):
        rows = np.asarray(indices, dtype=np.int64)
        cache = self.cache
        pooled = tuple(torch.from_numpy(np.array(tap[rows], dtype=np.float32))
                       for tap in cache.taps)
        final = torch.from_numpy(np.array(cache.final[rows]))
        return ((pooled, final), torch.from_numpy(np.array(cache.labels[rows])),
                torch.from_numpy(np.array(cache.sample_ids[rows])))


def epoch_loader(dataset: CachedBatches, batch_size: int, generator: torch.Generator,
                 device: torch.device) -> DataLoader:
    """Shuffled batches of one epoch, drawn from ``generator`` as a shuffled DataLoader of the
    images would draw them (same batches, same order); the last partial batch is dropped when
    there is more than one batch."""
    sampler = BatchSampler(RandomSampler(dataset, generator=generator), batch_size,
                           drop_last=len(dataset) > batch_size)
    return DataLoader(dataset, batch_size=None, sampler=sampler, generator=generator,
                      pin_memory=pin_memory(device))


def exit_logits_from_pooled(net: nn.Module, pooled: Sequence[Tensor]) -> Tensor:
    """Exit logits ``(B, N, C)`` (position-major) of ``net``'s heads on pooled tap features."""
    heads = net.exit_heads
    if len(pooled) != len(heads):
        raise DyceError(f"got {len(pooled)} pooled features, the network has {len(heads)} taps")
    return torch.stack(
        [head.mlp(vector) for vector, position in zip(pooled, heads, strict=True)
         for head in position], dim=1,
    )


# --------------------------------------------------------------------------- writing


def _new_arrays(folder: Path, n: int, classes: int, widths: Sequence[int], dtype: str):
    from numpy.lib.format import open_memmap

    def array(name: str, shape: tuple[int, ...], kind: str) -> np.ndarray:
        return open_memmap(folder / f"{name}.npy", mode="w+", dtype=kind, shape=shape)

    return (array("sample_ids", (n,), "int64"), array("labels", (n,), "int64"),
            array("final", (n, classes), "float32"),
            [array(f"tap{p}", (n, int(width)), dtype) for p, width in enumerate(widths)])


@torch.inference_mode()
def cache_features(
    net: nn.Module,
    dataset: Dataset,
    *,
    out_dir: str | os.PathLike,
    batch_size: int,
    model: str,
    dataset_name: str,
    split: str,
    device: str | torch.device = "auto",
    dtype: str = "float32",
    amp: str = "off",
    num_workers: int | str = "auto",
    shard: Shard | None = None,
) -> int:
    """Run ``net``'s backbone once over ``dataset`` and write the cache folder ``out_dir``.

    ``net`` is a ``MultiExitNetwork``; ``dataset`` yields ``(image, label, sample_id)`` in split
    order (:func:`dyce.data.splits.load_split`, evaluation transforms). With ``shard`` only that shard's
    samples (:func:`dyce.data.shards.shard_range`) are cached, and :func:`concat_features` joins the
    shards. Returns the number of samples written. Memory is bounded by one batch.
    """
    if dtype not in DTYPES:
        raise DyceError(f"must be one of {', '.join(DTYPES)}, got {dtype!r}", field="dtype")
    total = len(dataset)
    if total == 0:
        raise DyceError(f"split '{split}' has no samples", field="split")
    start, stop = shard_range(total, batch_size, shard)
    target = resolve_device(device)
    net.eval().to(target)
    part = dataset if shard is None else Subset(dataset, range(start, stop))
    loader = DataLoader(part, batch_size=batch_size, shuffle=False,
                        num_workers=loader_workers(num_workers, target),
                        pin_memory=pin_memory(target))
    pools = [GlobalPool(layout) for layout in net.tap_layouts]
    widths = [feature_channels(shape, layout)
              for shape, layout in zip(net.tap_shapes, net.tap_layouts, strict=True)]
    count = stop - start
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": str(model),
        "dataset": str(dataset_name), "split": str(split), "num_samples": count,
        "num_classes": int(net.num_classes), "taps": list(net.tap_nodes),
        "tap_layouts": list(net.tap_layouts), "tap_channels": widths, "dtype": dtype,
        "transforms": "eval", "backbone_digest": backbone_digest(net.backbone),
        SHARD_KEY: None if shard is None else shard_description(shard, start, stop, total),
    }
    with atomic_dir(out_dir) as folder:
        ids, labels_out, final_out, taps_out = _new_arrays(
            folder, count, int(net.num_classes), widths, dtype)
        row = 0
        bar = tqdm(total=count, desc=f"cache {split}", unit="sample", leave=False)
        for images, labels, sample_ids in loader:
            with autocast(target, amp):
                features, final = net.tap_features(images.to(target, non_blocking=True))
            rows = slice(row, row + len(labels))
            for p, (pool, feature) in enumerate(zip(pools, features, strict=True)):
                vector = pool(feature.float()).cpu().numpy()
                if dtype == "float16" and np.abs(vector).max(initial=0.0) > _FLOAT16_MAX:
                    raise DyceError(
                        f"tap {p} ({net.tap_nodes[p]}) has pooled values beyond float16's range; "
                        "cache in float32", field="dtype")
                taps_out[p][rows] = vector
            final_out[rows] = final.float().cpu().numpy()
            labels_out[rows] = labels.numpy()
            ids[rows] = sample_ids.numpy()
            row += len(labels)
            bar.update(len(labels))
        bar.close()
        for array in (ids, labels_out, final_out, *taps_out):
            array.flush()
        del ids, labels_out, final_out, taps_out
        (folder / META_FILE).write_text(json.dumps(plain_value(meta), indent=2) + "\n")
    return count


def concat_features(
    shard_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
    *, chunk_rows: int = 65536,
) -> int:
    """Join cache shards ``1/K … K/K`` (in order) into one cache ``out_dir``; returns N.

    Copies ``chunk_rows`` rows at a time (bounded memory); the result equals an unsharded cache.
    """
    if not shard_dirs:
        raise DyceError("no feature cache shards given", field="shards")
    caches = [open_feature_cache(path) for path in shard_dirs]
    sources = [str(cache.path / META_FILE) for cache in caches]
    check_shard_set([cache.meta.get(SHARD_KEY) for cache in caches], sources)
    first = {k: v for k, v in caches[0].meta.items() if k not in (SHARD_KEY, "num_samples")}
    for where, cache in zip(sources[1:], caches[1:], strict=True):
        for key, value in first.items():
            if cache.meta.get(key) != value:
                raise DyceError(f"differs from the first shard's {sources[0]}", path=where,
                                field=key)
    total = sum(cache.num_samples for cache in caches)
    meta = {**caches[0].meta, "num_samples": total, SHARD_KEY: None}
    with atomic_dir(out_dir) as folder:
        ids, labels, final, taps = _new_arrays(
            folder, total, int(meta["num_classes"]), meta["tap_channels"], meta["dtype"])
        row = 0
        for cache in caches:
            for begin in range(0, cache.num_samples, chunk_rows):
                end = min(begin + chunk_rows, cache.num_samples)
                rows = slice(row + begin, row + end)
                ids[rows] = cache.sample_ids[begin:end]
                labels[rows] = cache.labels[begin:end]
                final[rows] = cache.final[begin:end]
                for out, source in zip(taps, cache.taps, strict=True):
                    out[rows] = source[begin:end]
            row += cache.num_samples
        for array in (ids, labels, final, *taps):
            array.flush()
        del ids, labels, final, taps
        (folder / META_FILE).write_text(json.dumps(plain_value(meta), indent=2) + "\n")
    return total
