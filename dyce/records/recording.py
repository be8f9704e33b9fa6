"""Recording: run a multi-exit network over one split and stream its exit records to Parquet."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dyce.errors import DyceError
from dyce.network.training import resolve_device
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
    num_workers: int = 0,
) -> int:
    """Write the exit records of ``net`` on ``dataset`` to ``out_path`` (Parquet); returns N.

    ``net`` is a ``MultiExitNetwork`` (``forward(x) -> (final (B, C), exits (B, N, C))``, with a
    ``spec`` naming ``exit_types`` and ``taps``); ``dataset`` yields ``(image, label, sample_id)``
    (see :func:`dyce.data.splits.load_split`). Batches stream through :class:`dyce.records.format.RecordWriter`,
    so memory stays bounded and nothing is left at ``out_path`` if recording fails.
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
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=target.type == "cuda",
    )
    exit_count = len(exit_types)

    def run(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
        position_names=_position_names(spec, num_positions),
    ) as writer, tqdm(total=len(dataset), desc=f"record {split}", unit="sample",
                      leave=False) as bar:
        for labels, sample_ids, preds, confs in outputs():
            writer.append(
                labels.numpy(), preds.cpu().numpy(), confs.cpu().numpy(),
                sample_ids=sample_ids.numpy().astype("int64"),
            )
            count += len(labels)
            bar.update(len(labels))
    return count
