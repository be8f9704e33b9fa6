"""Sharded passes over a split: which samples shard ``i`` of ``K`` covers, and joining record shards.

A large split (ImageNet's 1.28 M training images) can be recorded, or its features cached, by
``K`` independent jobs. Shard ``i`` (1-based, written ``i/K``) covers a contiguous range of the
split's samples whose bounds fall on multiples of the batch size, so every batch of every shard
holds exactly the samples, in the order, of the corresponding batch of one unsharded pass: the
network sees identical inputs batch by batch and the joined result equals the one-job result
(CPU and GPU kernels may round differently for differently composed batches).

:func:`concat_records` joins record shards into one records file, streaming one row group at a
time (bounded memory) through :class:`dyce.records.format.RecordWriter`, so the joined file has the row
groups and metadata of a one-job recording.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dyce.errors import DyceError

SHARD_KEY = "shard"
"""``extra`` key (records) / metadata key (feature caches) describing a shard."""

_SHARD_PATTERN = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise DyceError(
                f"shard {self.index}/{self.count}: need 1 <= i <= K", field="shard"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | Shard | None) -> Shard | None:
    """``"i/K"`` → :class:`Shard`; ``None`` and ``"1/1"`` mean the whole split (None)."""
    if text is None or isinstance(text, Shard):
        shard = text
    else:
        match = _SHARD_PATTERN.fullmatch(str(text))
        if match is None:
            raise DyceError(f"must be 'i/K' such as '2/4', got {text!r}", field="shard")
        shard = Shard(int(match.group(1)), int(match.group(2)))
    return None if shard is None or shard.count == 1 else shard


def shard_range(num_samples: int, batch_size: int, shard: Shard | None) -> tuple[int, int]:
    """Sample range ``[start, stop)`` of ``shard`` in a split of ``num_samples``.

    The split's ``ceil(N / batch_size)`` batches are dealt out in ``K`` contiguous groups of
    ``floor(b·i/K) - floor(b·(i-1)/K)`` batches, so bounds are multiples of ``batch_size``.
    Raises :class:`DyceError` when there are fewer batches than shards (a shard would be empty).
    """
    if batch_size < 1:
        raise DyceError(f"must be at least 1, got {batch_size}", field="batch_size")
    if shard is None:
        return 0, num_samples
    batches = -(-num_samples // batch_size)
    if batches < shard.count:
        raise DyceError(
            f"{num_samples} samples make {batches} batches of {batch_size}, too few for "
            f"{shard.count} shards; use fewer shards or a smaller batch size", field="shard",
        )
    first = batches * (shard.index - 1) // shard.count
    last = batches * shard.index // shard.count
    return first * batch_size, min(last * batch_size, num_samples)


def shard_description(shard: Shard, start: int, stop: int, num_samples: int) -> dict[str, int]:
    """The JSON stored with a shard: ``{index, count, start, stop, num_samples}``."""
    return {"index": shard.index, "count": shard.count, "start": int(start), "stop": int(stop),
            "num_samples": int(num_samples)}


def check_shard_set(descriptions: Sequence[Any], sources: Sequence[str]) -> None:
    """Raise :class:`DyceError` unless ``descriptions`` (in the given order) are shards
    ``1/K … K/K`` of one split, each once, covering it contiguously."""
    for where, shard in zip(sources, descriptions, strict=True):
        if not isinstance(shard, dict) or not {"index", "count", "start", "stop",
                                                "num_samples"} <= set(shard):
            raise DyceError("not a shard (no shard description)", path=where, field=SHARD_KEY)
    count = descriptions[0]["count"]
    total = descriptions[0]["num_samples"]
    if len(descriptions) != count:
        raise DyceError(
            f"{len(descriptions)} shards given, the first says there are {count}",
            path=sources[0], field=f"{SHARD_KEY}.count",
        )
    position = 0
    for expected, (where, shard) in enumerate(zip(sources, descriptions, strict=True), 1):
        if shard["count"] != count or shard["num_samples"] != total:
            raise DyceError(
                f"is shard {shard['index']}/{shard['count']} of {shard['num_samples']} samples; "
                f"the first is of {count} shards, {total} samples", path=where, field=SHARD_KEY,
            )
        if shard["index"] != expected or shard["start"] != position:
            raise DyceError(
                f"is shard {shard['index']}/{count} starting at sample {shard['start']}; "
                f"expected shard {expected}/{count} starting at {position} (give the shards "
                "in order, each once)", path=where, field=f"{SHARD_KEY}.index",
            )
        position = shard["stop"]
    if position != total:
        raise DyceError(f"the shards end at sample {position} of {total}", path=sources[-1],
                        field=f"{SHARD_KEY}.stop")


# --------------------------------------------------------------------------- records


def _column_array(column, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A (fixed-size list) Arrow column as a numpy array of ``shape``."""
    import pyarrow as pa

    chunk = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    flat = chunk.flatten() if pa.types.is_fixed_size_list(chunk.type) else chunk
    return flat.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(shape)


def concat_records(
    shard_paths: Sequence[str | os.PathLike], out_path: str | os.PathLike,
    *, row_group_size: int = 65536,
) -> int:
    """Join record shards (written by ``dyce record --shard i/K``) into ``out_path``; returns N.

    The shards must be ``1/K … K/K`` of one split, in order, with identical metadata apart from
    the shard description, which the joined file drops: it equals a one-job recording.
    """
    import pyarrow.parquet as pq

    from dyce.records.format import RecordWriter, read_records_metadata

    if not shard_paths:
        raise DyceError("no record shards given", field="shards")
    sources = [str(path) for path in shard_paths]
    metas = [read_records_metadata(path) for path in shard_paths]
    check_shard_set([meta["extra"].get(SHARD_KEY) for meta in metas], sources)
    first = _without_shard(metas[0])
    for where, meta in zip(sources[1:], metas[1:], strict=True):
        other = _without_shard(meta)
        for key, value in first.items():
            if other.get(key) != value:
                raise DyceError(f"differs from the first shard's {sources[0]}", path=where,
                                field=f"metadata.dyce.{key}")
    exits, topk = len(first["exits"]), first["topk"]
    count = 0
    with RecordWriter(
        out_path, exit_types=first["exit_types"], num_positions=first["num_positions"],
        num_classes=first["num_classes"], topk=topk, model=first["model"],
        dataset=first["dataset"], split=first["split"], position_names=first["position_names"],
        row_group_size=row_group_size, extra=first["extra"],
    ) as writer:
        for path in shard_paths:
            parquet_file = pq.ParquetFile(path)
            for group in range(parquet_file.num_row_groups):
                table = parquet_file.read_row_group(group)
                rows = table.num_rows
                preds = np.stack([_column_array(table.column(f"pred_{e}"), (rows, topk), np.int64)
                                  for e in range(exits)])
                confs = np.stack([_column_array(table.column(f"conf_{e}"), (rows, topk),
                                                np.float32) for e in range(exits)])
                writer.append(
                    _column_array(table.column("label"), (rows,), np.int64), preds, confs,
                    sample_ids=_column_array(table.column("sample_id"), (rows,), np.int64),
                )
                count += rows
    return count


def _without_shard(meta: dict[str, Any]) -> dict[str, Any]:
    extra = {key: value for key, value in meta["extra"].items() if key != SHARD_KEY}
    return {**meta, "extra": extra}

