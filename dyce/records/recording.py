"""Recording: run a multi-exit network over one split and stream its exit records to Parquet.

:func:`record_split` runs the whole network (optionally one shard of the split, see
:mod:`dyce.data.shards`); :func:`record_features` runs only the exit heads, on a feature cache of the
split (:mod:`dyce.network.features`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from dyce.data.shards import SHARD_KEY, Shard, shard_description, shard_range
from dyce.errors import DyceError
from dyce.network.device import autocast, loader_workers, pin_memory, resolve_device
from dyce.records.format import RecordWriter


def exit_topk(
    final_logits: torch.Tensor, exit_logits: torch.Tensor, topk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k softmax classes of every exit and of the final head, in record order.

    ``final_logits`` ``(B, C)``, ``exit_logits`` ``(B, N, C)`` (position-major). Returns
    ``preds`` int64 ``(N + 1, B, topk)`` and ``confs`` float32 ``(N + 1, B, topk)`` with the
    final head last; ``confs[..., 0]`` is each exit's confidence (top-1 probability).
    """
    logits = torch.cat([exit_logits.transpose(0, 1), final_logits.unsqueeze(0)], dim=0)
    probabilities = torch.softmax(logits.float(), dim=-1)
    confs, preds = probabilities.topk(topk, dim=-1, largest=True, sorted=True)
    return preds, confs


def _position_names(spec: dict, num_positions: int) -> list[str] | None:
    taps: Sequence[str] | None = spec.get("taps")
    if taps is None or len(taps) != num_positions - 1:
        return None
    return [str(name) for name in taps] + ["final"]


@torch.inference_mode()
def record_split(
    net: nn.Module,
    dataset: Dataset,
    *,
    topk: int,
    batch_size: int,
    device: str | torch.device,
    out_path: str | os.PathLike,
    model: str,
    dataset_name: str,
    split: str,
    num_workers: int | str = 0,
    amp: str = "off",
    shard: Shard | None = None,
) -> int:
    """Write the exit records of ``net`` on ``dataset`` to ``out_path`` (Parquet); returns N.

    ``net`` is a ``MultiExitNetwork`` (``forward(x) -> (final (B, C), exits (B, N, C))``, with a
    ``spec`` naming ``exit_types`` and ``taps``); ``dataset`` yields ``(image, label, sample_id)``
    (see :func:`dyce.data.splits.load_split`). Batches stream through :class:`dyce.records.format.RecordWriter`,
    so memory stays bounded and nothing is left at ``out_path`` if recording fails.
    ``shard``: record only that shard's samples (:func:`dyce.data.shards.shard_range`; the file's
    ``extra.shard`` describes it, :func:`dyce.data.shards.concat_records` joins the shards).
    ``num_workers``: DataLoader processes or ``"auto"``; ``amp``: mixed precision
    (:mod:`dyce.network.device`); softmax and top-k are computed in float32.
    """
    spec = dict(net.spec)
    exit_types = [str(name) for name in spec["exit_types"]]
    num_classes = int(spec["num_classes"])
    if not 1 <= topk <= num_classes:
        raise DyceError(f"must lie in [1, {num_classes}], got {topk}", field="topk")
    if batch_size < 1:
        raise DyceError(f"must be at least 1, got {batch_size}", field="batch_size")
    if len(dataset) == 0:
        raise DyceError(f"split '{split}' has no samples", field="split")
    target = resolve_device(device)
    net.eval().to(target)
    start, stop = shard_range(len(dataset), batch_size, shard)
    extra = None if shard is None else {
        SHARD_KEY: shard_description(shard, start, stop, len(dataset))}
    part = dataset if shard is None else Subset(dataset, range(start, stop))
    loader = DataLoader(
        part, batch_size=batch_size, shuffle=False,
        num_workers=loader_workers(num_workers, target), pin_memory=pin_memory(target),
    )
    exit_count = len(exit_types)

    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(target, amp):
            final_logits, exit_logits = net(images.to(target, non_blocking=True))
        if final_logits.shape[-1] != num_classes:
            raise DyceError(
                f"model gives {final_logits.shape[-1]} classes, its spec says {num_classes}",
                field="num_classes",
            )
        if exit_logits.shape[1] % exit_count:
            raise DyceError(
                f"{exit_logits.shape[1]} exits are not a multiple of {exit_count} exit types",
                field="exit_types",
            )
        return exit_topk(final_logits, exit_logits, topk)

    batches = iter(loader)
    first_images, first_labels, first_ids = next(batches)
    first_preds, first_confs = run(first_images)
    num_positions = (first_preds.shape[0] - 1) // exit_count + 1

    def outputs():
        yield first_labels, first_ids, first_preds, first_confs
        for images, labels, sample_ids in batches:
            yield labels, sample_ids, *run(images)

    count = 0
    with RecordWriter(
        Path(out_path), exit_types=exit_types, num_positions=num_positions,
        num_classes=num_classes, topk=topk, model=model, dataset=dataset_name, split=split,
        position_names=_position_names(spec, num_positions), extra=extra,
    ) as writer, tqdm(total=len(part), desc=f"record {split}", unit="sample",
                      leave=False) as bar:
        for labels, sample_ids, preds, confs in outputs():
            writer.append(
                labels.numpy(), preds.cpu().numpy(), confs.cpu().numpy(),
                sample_ids=sample_ids.numpy().astype("int64"),
            )
            count += len(labels)
            bar.update(len(labels))
    return count


@torch.inference_mode()
def record_features(
    net: nn.Module,
    features: str | os.PathLike,
    *,
    topk: int,
    batch_size: int,
    device: str | torch.device,
    out_path: str | os.PathLike,
    model: str,
    sample_ids: Sequence[int] | None = None,
) -> int:
    """Records of ``net``'s exit heads on a feature cache (no backbone pass); returns N.

    ``features`` is a cache folder of one split made with ``net``'s backbone and taps
    (:func:`dyce.network.features.cache_features`); ``sample_ids``, when given, must be the cached ones
    (the split in SPLITS.json). The final head's record comes from the cached logits. The file
    equals :func:`record_split` on the same split up to float rounding (exactly, with a float32
    cache and the same batch size on the CPU).
    """
    from dyce.network.features import check_cache_fits, exit_logits_from_pooled, open_feature_cache

    cache = open_feature_cache(features)
    check_cache_fits(cache, net, sample_ids=sample_ids)
    spec = dict(net.spec)
    exit_types = [str(name) for name in spec["exit_types"]]
    num_classes = int(spec["num_classes"])
    if not 1 <= topk <= num_classes:
        raise DyceError(f"must lie in [1, {num_classes}], got {topk}", field="topk")
    if batch_size < 1:
        raise DyceError(f"must be at least 1, got {batch_size}", field="batch_size")
    target = resolve_device(device)
    net.eval().to(target)
    num_positions = len(cache.taps) + 1
    split = cache.meta["split"]
    with RecordWriter(
        Path(out_path), exit_types=exit_types, num_positions=num_positions,
        num_classes=num_classes, topk=topk, model=model, dataset=cache.meta["dataset"],
        split=split, position_names=_position_names(spec, num_positions),
    ) as writer, tqdm(total=cache.num_samples, desc=f"record {split} (cache)", unit="sample",
                      leave=False) as bar:
        for start in range(0, cache.num_samples, batch_size):
            rows = slice(start, start + batch_size)
            pooled = [torch.from_numpy(np.array(tap[rows], dtype=np.float32)).to(target)
                      for tap in cache.taps]
            final_logits = torch.from_numpy(np.array(cache.final[rows])).to(target)
            preds, confs = exit_topk(final_logits, exit_logits_from_pooled(net, pooled), topk)
            writer.append(np.asarray(cache.labels[rows]), preds.cpu().numpy(),
                          confs.cpu().numpy(), sample_ids=np.asarray(cache.sample_ids[rows]))
            bar.update(len(final_logits))
    return cache.num_samples
