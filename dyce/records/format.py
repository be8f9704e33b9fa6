"""Exit records: what every exit and the final head predicted for every sample of one split.

In memory a record is an :class:`ExitRecords`; on disk it is Parquet (see ``docs/records.md``).
Exit order is position-major, exactly as in the original DyCE ``.npz`` records: exit index
``e = position * num_exit_types + exit_type`` for candidate positions ``0 … P-2``, and the final
head last (``e = E - 1``), so ``E = (P - 1) * T + 1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dyce.errors import DyceError
from dyce.io import atomic_path

if TYPE_CHECKING:
    import polars as pl

    from dyce.macs.info import MacsInfo

FORMAT_VERSION = 1
METADATA_KEY = b"dyce"


#: ``extra`` key marking records whose exit types were not known when they were written (the
#: seed ``OutputRecorder`` without ``exit_types``); see :func:`regroup_exit_types`.
UNTYPED_KEY = "exit_types_unknown"


@dataclass(frozen=True, eq=False)
class ExitRecords:
    """Predictions of every exit for one split.

    Attributes:
        labels: int array ``(N,)``, ground-truth class of each sample.
        preds: int array ``(E, N, topk)``, top-k predicted classes per exit, best first.
        confs: float32 array ``(E, N, topk)``, softmax probabilities of those classes.
        exit_types: names of the ``T`` exit types (e.g. ``"mlp1x1000"``).
        num_positions: ``P``, candidate positions plus the final head.
        num_classes: number of classes ``C`` (labels and predictions lie in ``[0, C)``).
        sample_ids: int64 array ``(N,)``, index of each sample in its dataset.
        position_names: ``P`` names (tap node names, last ``"final"``).
        model, dataset, split: where the record came from.
        source: file the record was read from (for error messages), or ``None``.
    """

    labels: np.ndarray
    preds: np.ndarray
    confs: np.ndarray
    exit_types: tuple[str, ...]
    num_positions: int
    num_classes: int
    sample_ids: np.ndarray | None = None
    position_names: tuple[str, ...] | None = None
    model: str = ""
    dataset: str = ""
    split: str = ""
    source: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source
        if self.preds.ndim != 3 or self.confs.shape != self.preds.shape:
            raise DyceError(
                f"preds {self.preds.shape} and confs {self.confs.shape} must both be (E, N, topk)",
                path=where, field="preds",
            )
        expected = (self.num_positions - 1) * len(self.exit_types) + 1
        if self.preds.shape[0] != expected:
            raise DyceError(
                f"{self.preds.shape[0]} exits recorded, but {self.num_positions} positions x "
                f"{len(self.exit_types)} exit types need {expected}",
                path=where, field="exits",
            )
        if self.labels.shape != (self.preds.shape[1],):
            raise DyceError(
                f"labels {self.labels.shape} do not match {self.preds.shape[1]} samples",
                path=where, field="label",
            )
        if self.sample_ids is None:
            object.__setattr__(self, "sample_ids", np.arange(self.num_samples, dtype=np.int64))
        if self.position_names is None:
            names = tuple(f"p{p}" for p in range(self.num_positions - 1)) + ("final",)
            object.__setattr__(self, "position_names", names)

    @property
    def num_samples(self) -> int:
        """``N``."""
        return int(self.preds.shape[1])

    @property
    def num_exit_types(self) -> int:
        """``T``."""
        return len(self.exit_types)

    @property
    def num_exits(self) -> int:
        """``E = (P - 1) * T + 1`` (the final head included)."""
        return int(self.preds.shape[0])

    @property
    def topk(self) -> int:
        return int(self.preds.shape[2])

    def exit_index(self, position: int, exit_type: int) -> int:
        """Row of exit ``(position, exit_type)`` in ``preds``/``confs`` (final head: ``P-1``)."""
        if position == self.num_positions - 1:
            return self.num_exits - 1
        return position * self.num_exit_types + exit_type

    @cached_property
    def top1_confs(self) -> np.ndarray:
        """float32 ``(E, N)``: top-1 confidence of every exit."""
        return np.ascontiguousarray(self.confs[:, :, 0])

    @cached_property
    def top1_preds(self) -> np.ndarray:
        """int ``(E, N)``: top-1 class of every exit."""
        return np.ascontiguousarray(self.preds[:, :, 0])

    @cached_property
    def correct(self) -> np.ndarray:
        """bool ``(E, N)``: whether each exit's top-1 class equals the label."""
        return self.top1_preds == self.labels[None, :]

    @property
    def final_accuracy(self) -> float:
        """Top-1 accuracy of the final head alone (the original model)."""
        return float(self.correct[-1].mean()) if self.num_samples else float("nan")

    def check_values(self) -> None:
        """Raise :class:`DyceError` unless labels, predictions and confidences are in range."""
        validate_values(self.labels, self.preds, self.confs, self.num_classes, where=self.source)


# --------------------------------------------------------------------------- dtypes and checks


def label_dtype(num_classes: int) -> np.dtype:
    """Smallest signed integer dtype holding every label in ``[0, num_classes)``."""
    for dtype in (np.int8, np.int16, np.int32):
        if num_classes - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def pred_dtype(num_classes: int) -> np.dtype:
    """int16 when every class index fits, else int32 (the dtype of ``pred_{e}`` on disk)."""
    return np.dtype(np.int16 if num_classes - 1 <= np.iinfo(np.int16).max else np.int32)


def validate_values(
    labels: np.ndarray,
    preds: np.ndarray,
    confs: np.ndarray,
    num_classes: int,
    where: str | os.PathLike | None = None,
    first_exit: int = 0,
) -> None:
    """Raise :class:`DyceError` unless the values of a record are usable.

    Args:
        labels: int ``(N,)``, must lie in ``[0, num_classes)``.
        preds: int ``(E, N, topk)``, must lie in ``[0, num_classes)``.
        confs: float ``(E, N, topk)``, must be finite probabilities in ``[0, 1]``.
        num_classes: ``C``.
        where: file named in the error.
        first_exit: offset added to exit indices in messages (``pred_{e}`` / ``conf_{e}``).
    """
    if labels.size:
        low, high = labels.min(), labels.max()
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise DyceError(
                f"label {int(bad)} is outside [0, {num_classes}) (num_classes = {num_classes})",
                path=where, field="label",
            )
    if preds.size == 0:
        return
    flat_preds = preds.reshape(preds.shape[0], -1)
    out_of_range = (flat_preds.min(axis=1) < 0) | (flat_preds.max(axis=1) >= num_classes)
    bad_exits = np.flatnonzero(out_of_range)
    if bad_exits.size:
        e = int(bad_exits[0])
        row = flat_preds[e]
        bad = row[(row < 0) | (row >= num_classes)][0]
        raise DyceError(
            f"predicted class {int(bad)} is outside [0, {num_classes}) at exit {e + first_exit}",
            path=where, field=f"pred_{e + first_exit}",
        )
    flat_confs = confs.reshape(confs.shape[0], -1)
    low, high = flat_confs.min(axis=1), flat_confs.max(axis=1)  # NaN propagates into both
    bad_exits = np.flatnonzero(~((low >= 0) & (high <= 1)))
    if bad_exits.size:
        e = int(bad_exits[0])
        what = "NaN" if np.isnan(low[e]) else f"{float(low[e] if low[e] < 0 else high[e])!r}"
        raise DyceError(
            f"confidence {what} at exit {e + first_exit} is not a probability in [0, 1]",
            path=where, field=f"conf_{e + first_exit}",
        )


# --------------------------------------------------------------------------- file metadata


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def records_metadata(
    *,
    exit_types: Sequence[str],
    num_positions: int,
    num_classes: int,
    topk: int,
    position_names: Sequence[str] | None = None,
    model: str = "",
    dataset: str = "",
    split: str = "",
    extra: dict | None = None,
    where: str | os.PathLike | None = None,
    field_prefix: str = "",
) -> dict[str, Any]:
    """The JSON stored under the Parquet file-metadata key ``dyce`` (validated).

    ``exits`` lists every exit in column order: ``{index, position, exit_type, name}``;
    the final head has ``exit_type`` ``None`` and ``position`` ``P-1``. Errors name ``where``
    and the field (prefixed with ``field_prefix``).
    """

    def fail(message: str, name: str) -> DyceError:
        return DyceError(message, path=where, field=field_prefix + name)

    if isinstance(exit_types, str) or not isinstance(exit_types, Sequence):
        raise fail(f"is {exit_types!r}; must be a list of names", "exit_types")
    exit_types = [str(name) for name in exit_types]
    if not exit_types or len(set(exit_types)) != len(exit_types) or not all(exit_types):
        raise fail(f"{exit_types} must be distinct non-empty names, at least one", "exit_types")
    if not _is_int(num_positions) or num_positions < 1:
        raise fail(f"is {num_positions!r}; must be an integer >= 1", "num_positions")
    if not _is_int(num_classes) or num_classes < 1:
        raise fail(f"is {num_classes!r}; must be an integer >= 1", "num_classes")
    if not _is_int(topk) or not 1 <= topk <= num_classes:
        raise fail(f"is {topk!r}; must be an integer in [1, num_classes]", "topk")
    if position_names is None:
        position_names = [f"p{p}" for p in range(num_positions - 1)] + ["final"]
    position_names = [str(name) for name in position_names]
    if len(position_names) != num_positions:
        raise fail(f"has {len(position_names)} names for {num_positions} positions",
                   "position_names")
    if extra is not None and not isinstance(extra, dict):
        raise fail("must be a JSON object (dict)", "extra")
    exits = [
        {"index": p * len(exit_types) + k, "position": p, "exit_type": name,
         "name": f"{position_names[p]}/{name}"}
        for p in range(num_positions - 1)
        for k, name in enumerate(exit_types)
    ]
    exits.append({"index": len(exits), "position": num_positions - 1, "exit_type": None,
                  "name": position_names[-1]})
    return {
        "format_version": FORMAT_VERSION,
        "exit_types": exit_types,
        "num_positions": int(num_positions),
        "position_names": position_names,
        "exits": exits,
        "topk": int(topk),
        "num_classes": int(num_classes),
        "model": str(model),
        "dataset": str(dataset),
        "split": str(split),
        "extra": dict(extra or {}),
    }


def _parse_metadata(raw: dict[bytes, bytes] | None, where: str) -> dict[str, Any]:
    """Decode and check the ``dyce`` file metadata of a records file."""
    if not raw or METADATA_KEY not in raw:
        raise DyceError(
            "no 'dyce' file metadata; this Parquet file was not written as dyce records",
            path=where, field="metadata.dyce",
        )
    try:
        meta = json.loads(raw[METADATA_KEY])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DyceError(f"not valid JSON ({error})", path=where, field="metadata.dyce") from None
    if not isinstance(meta, dict):
        raise DyceError("must be a JSON object", path=where, field="metadata.dyce")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise DyceError(
            f"is {version!r}; this dyce reads format version {FORMAT_VERSION}",
            path=where, field="metadata.dyce.format_version",
        )
    for key in ("exit_types", "num_positions", "topk", "num_classes", "exits"):
        if key not in meta:
            raise DyceError("missing", path=where, field=f"metadata.dyce.{key}")
    if not isinstance(meta["exit_types"], list):
        raise DyceError("must be a list of names", path=where, field="metadata.dyce.exit_types")
    expected = records_metadata(
        exit_types=meta["exit_types"], num_positions=meta["num_positions"],
        num_classes=meta["num_classes"], topk=meta["topk"],
        position_names=meta.get("position_names"), model=meta.get("model", ""),
        dataset=meta.get("dataset", ""), split=meta.get("split", ""), extra=meta.get("extra"),
        where=where, field_prefix="metadata.dyce.",
    )
    exits = meta["exits"]
    if not isinstance(exits, list) or len(exits) != len(expected["exits"]):
        count = len(exits) if isinstance(exits, list) else exits
        raise DyceError(
            f"lists {count} exits, but {expected['num_positions']} positions x "
            f"{len(expected['exit_types'])} exit types need {len(expected['exits'])}",
            path=where, field="metadata.dyce.exits",
        )
    return expected | {"exits": exits}


# --------------------------------------------------------------------------- writing


def _schema(metadata_json: str, meta: dict[str, Any], pred_type: np.dtype):
    import pyarrow as pa

    topk = meta["topk"]
    fields = [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("label", pa.from_numpy_dtype(label_dtype(meta["num_classes"])), nullable=False),
    ]
    for e in range(len(meta["exits"])):
        fields.append(pa.field(f"pred_{e}", pa.list_(pa.from_numpy_dtype(pred_type), topk)))
        fields.append(pa.field(f"conf_{e}", pa.list_(pa.float32(), topk)))
    return pa.schema(fields, metadata={METADATA_KEY: metadata_json.encode()})


class RecordWriter:
    """Stream exit records to a Parquet file in row groups (bounded memory).

    Use as a context manager; the file appears at ``path`` only when the block ends without an
    exception (it is written to a temporary sibling and renamed), otherwise nothing is left::

        with RecordWriter("val.parquet", exit_types=names, num_positions=P, num_classes=C,
                          topk=1) as writer:
            for batch in batches:
                writer.append(labels, preds, confs)

    Memory use is about one row group plus one batch: ``row_group_size * E * topk * 6`` bytes.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        exit_types: Sequence[str],
        num_positions: int,
        num_classes: int,
        topk: int,
        model: str = "",
        dataset: str = "",
        split: str = "",
        position_names: Sequence[str] | None = None,
        row_group_size: int = 65536,
        extra: dict | None = None,
    ) -> None:
        self.path = Path(path)
        self.metadata = records_metadata(
            exit_types=exit_types, num_positions=num_positions, num_classes=num_classes,
            topk=topk, position_names=position_names, model=model, dataset=dataset,
            split=split, extra=extra, where=path,
        )
        try:
            metadata_json = json.dumps(self.metadata)
        except (TypeError, ValueError) as error:
            raise DyceError(f"not JSON-serialisable ({error})", path=path, field="extra") from None
        if row_group_size < 1:
            raise DyceError("must be >= 1", path=path, field="row_group_size")
        self.num_exits = len(self.metadata["exits"])
        self.num_classes = int(num_classes)
        self.topk = int(topk)
        self.row_group_size = int(row_group_size)
        self.num_rows = 0
        self._pred_dtype = pred_dtype(self.num_classes)
        self._label_dtype = label_dtype(self.num_classes)
        self._schema = _schema(metadata_json, self.metadata, self._pred_dtype)
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered_rows = 0
        self._stack: contextlib.ExitStack | None = None
        self._writer = None

    def __enter__(self) -> RecordWriter:
        import pyarrow.parquet as pq

        self._stack = contextlib.ExitStack()
        temporary = self._stack.enter_context(atomic_path(self.path))
        self._writer = pq.ParquetWriter(
            temporary, self._schema, compression="zstd", use_dictionary=False
        )
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        assert self._stack is not None and self._writer is not None, "writer was not entered"
        stack, writer = self._stack, self._writer
        self._stack = self._writer = None
        try:
            if exc_type is None:
                self._flush(final=True, writer=writer)
                if self.num_rows == 0:
                    raise DyceError("no samples were appended; empty records are not written",
                                    path=self.path, field="label")
            writer.close()
        except BaseException:
            with contextlib.suppress(Exception):
                writer.close()
            stack.__exit__(*sys.exc_info())
            raise
        return bool(stack.__exit__(exc_type, exc, traceback))

    def append(
        self,
        labels: np.ndarray,
        preds: np.ndarray,
        confs: np.ndarray,
        sample_ids: np.ndarray | None = None,
    ) -> None:
        """Add one batch of ``B`` samples.

        Args:
            labels: int ``(B,)`` (``(B, 1)`` accepted), class of each sample.
            preds: int ``(E, B, topk)``, top-k classes of every exit, best first.
            confs: float ``(E, B, topk)``, their softmax probabilities.
            sample_ids: int ``(B,)``; default: the running row number.
        """
        if self._writer is None:
            raise DyceError("append() called outside the 'with RecordWriter(...)' block",
                            path=self.path)
        labels = np.asarray(labels)
        preds, confs = np.asarray(preds), np.asarray(confs)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        batch = labels.shape[0] if labels.ndim == 1 else -1
        expected = (self.num_exits, batch, self.topk)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DyceError(f"must be an integer array (B,), got {labels.dtype} {labels.shape}",
                            path=self.path, field="label")
        for name, array, kind in (("pred", preds, np.integer), ("conf", confs, np.floating)):
            if array.shape != expected or not np.issubdtype(array.dtype, kind):
                raise DyceError(
                    f"must be a {kind.__name__} array {expected} (exits, batch, topk), got "
                    f"{array.dtype} {array.shape}", path=self.path, field=name + "s",
                )
        confs = confs.astype(np.float32, copy=False)
        validate_values(labels, preds, confs, self.num_classes, where=self.path)
        if sample_ids is None:
            sample_ids = np.arange(self.num_rows, self.num_rows + batch, dtype=np.int64)
        else:
            sample_ids = np.asarray(sample_ids)
            if sample_ids.shape != (batch,) or not np.issubdtype(sample_ids.dtype, np.integer):
                raise DyceError(f"must be an integer array ({batch},), got {sample_ids.shape}",
                                path=self.path, field="sample_id")
        self._buffer.append((
            sample_ids.astype(np.int64, copy=False),
            labels.astype(self._label_dtype, copy=False),
            preds.astype(self._pred_dtype, copy=False),
            confs,
        ))
        self._buffered_rows += batch
        self.num_rows += batch
        if self._buffered_rows >= self.row_group_size:
            self._flush(final=False, writer=self._writer)

    def _flush(self, final: bool, writer) -> None:
        """Write whole row groups from the buffer (and the remainder when ``final``)."""
        if not self._buffer:
            return
        import pyarrow as pa

        ids, labels, preds, confs = (
            np.concatenate([part[i] for part in self._buffer], axis=1 if i >= 2 else 0)
            for i in range(4)
        )
        self._buffer, self._buffered_rows = [], 0
        rows = labels.shape[0]
        full = rows if final else rows - rows % self.row_group_size
        for start in range(0, full, self.row_group_size):
            stop = min(start + self.row_group_size, full)
            columns = [pa.array(ids[start:stop]), pa.array(labels[start:stop])]
            for e in range(self.num_exits):
                for values in (preds, confs):
                    flat = pa.array(np.ascontiguousarray(values[e, start:stop]).reshape(-1))
                    columns.append(pa.FixedSizeListArray.from_arrays(flat, self.topk))
            writer.write_table(pa.Table.from_arrays(columns, schema=self._schema),
                               row_group_size=self.row_group_size)
        if full < rows:
            self._buffer = [(ids[full:], labels[full:], preds[:, full:], confs[:, full:])]
            self._buffered_rows = rows - full


def write_records(
    path: str | os.PathLike, records: ExitRecords, *, row_group_size: int = 65536
) -> None:
    """Write ``records`` to ``path`` as dyce Parquet records (atomically, in row groups)."""
    with RecordWriter(
        path, exit_types=records.exit_types, num_positions=records.num_positions,
        num_classes=records.num_classes, topk=records.topk, model=records.model,
        dataset=records.dataset, split=records.split, position_names=records.position_names,
        row_group_size=row_group_size, extra=records.extra,
    ) as writer:
        for start in range(0, records.num_samples, row_group_size):
            stop = start + row_group_size
            writer.append(records.labels[start:stop], records.preds[:, start:stop],
                          records.confs[:, start:stop], records.sample_ids[start:stop])


# --------------------------------------------------------------------------- reading


def _open_parquet(path: str | os.PathLike):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise DyceError("file not found", path=path)
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise DyceError(f"not a readable Parquet file ({error})", path=path) from None


def read_records_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The validated ``dyce`` metadata of a records file, without reading any rows."""
    parquet_file = _open_parquet(path)
    return _parse_metadata(parquet_file.schema_arrow.metadata, str(path))


def _check_columns(schema, meta: dict[str, Any], where: str) -> None:
    """Every column the metadata promises exists with the right type, and no extra exits."""
    import pyarrow as pa

    names = set(schema.names)
    for name in ("sample_id", "label"):
        if name not in names:
            raise DyceError("column missing", path=where, field=name)
        if not pa.types.is_integer(schema.field(name).type):
            raise DyceError(f"has type {schema.field(name).type}; must be an integer",
                            path=where, field=name)
    num_exits = len(meta["exits"])
    stored = sum(1 for name in names if name.startswith("pred_"))
    if stored != num_exits:
        raise DyceError(
            f"the file has {stored} pred_ columns but its metadata lists {num_exits} exits",
            path=where, field="exits",
        )
    for e in range(num_exits):
        for prefix, check in (("pred", pa.types.is_integer), ("conf", pa.types.is_floating)):
            name = f"{prefix}_{e}"
            if name not in names:
                raise DyceError("column missing", path=where, field=name)
            kind = schema.field(name).type
            if (not pa.types.is_fixed_size_list(kind) or kind.list_size != meta["topk"]
                    or not check(kind.value_type)):
                raise DyceError(
                    f"has type {kind}; must be a fixed-size list of {meta['topk']} "
                    f"{'integers' if prefix == 'pred' else 'floats'}", path=where, field=name,
                )


def _fill(out: np.ndarray, column, where: str, name: str) -> None:
    """Copy an Arrow column (plain or fixed-size list) into the preallocated ``out`` rows."""
    start = 0
    for chunk in column.chunks:
        flat = chunk.flatten() if hasattr(chunk, "flatten") else chunk
        if chunk.null_count or flat.null_count:
            raise DyceError("contains missing (null) values", path=where, field=name)
        values = flat.to_numpy(zero_copy_only=False)
        stop = start + len(chunk)
        out[start:stop] = values.reshape(out[start:stop].shape)
        start = stop


def read_records(path: str | os.PathLike) -> ExitRecords:
    """Read and validate a dyce Parquet records file.

    Reads one row group at a time straight into preallocated arrays, so peak memory is the
    result plus one row group. Returns :class:`ExitRecords` with ``labels`` int64 ``(N,)``,
    ``preds`` int16/int32 ``(E, N, topk)`` and ``confs`` float32 ``(E, N, topk)``.
    """
    import pyarrow as pa

    where = str(path)
    parquet_file = _open_parquet(path)
    schema = parquet_file.schema_arrow
    meta = _parse_metadata(schema.metadata, where)
    _check_columns(schema, meta, where)
    num_samples = parquet_file.metadata.num_rows
    if num_samples == 0:
        raise DyceError("the records hold no samples", path=where, field="label")
    num_exits, topk = len(meta["exits"]), meta["topk"]
    pred_types = {schema.field(f"pred_{e}").type.value_type.to_pandas_dtype()
                  for e in range(num_exits)}
    labels = np.empty(num_samples, dtype=np.int64)
    sample_ids = np.empty(num_samples, dtype=np.int64)
    preds = np.empty((num_exits, num_samples, topk), dtype=np.result_type(*pred_types))
    confs = np.empty((num_exits, num_samples, topk), dtype=np.float32)
    start = 0
    try:
        for group in range(parquet_file.num_row_groups):
            table = parquet_file.read_row_group(group)
            stop = start + table.num_rows
            _fill(sample_ids[start:stop], table.column("sample_id"), where, "sample_id")
            _fill(labels[start:stop], table.column("label"), where, "label")
            for e in range(num_exits):
                _fill(preds[e, start:stop], table.column(f"pred_{e}"), where, f"pred_{e}")
                _fill(confs[e, start:stop], table.column(f"conf_{e}"), where, f"conf_{e}")
            start = stop
    except (pa.ArrowException, OSError) as error:
        raise DyceError(f"corrupt or truncated Parquet data ({error})", path=where) from None
    validate_values(labels, preds, confs, meta["num_classes"], where=where)
    return ExitRecords(
        labels=labels, preds=preds, confs=confs, exit_types=tuple(meta["exit_types"]),
        num_positions=meta["num_positions"], num_classes=meta["num_classes"],
        sample_ids=sample_ids, position_names=tuple(meta["position_names"]),
        model=meta["model"], dataset=meta["dataset"], split=meta["split"], source=where,
        extra=meta["extra"],
    )


def scan_records(path: str | os.PathLike) -> pl.LazyFrame:
    """A lazy polars frame over a records file (metadata validated first).

    Columns: ``sample_id``, ``label``, ``pred_{e}`` and ``conf_{e}`` (polars ``Array`` of
    length ``topk``); see :func:`read_records_metadata` for the exit table.
    """
    import polars as pl

    read_records_metadata(path)
    return pl.scan_parquet(path)


# --------------------------------------------------------------------------- compatibility


def check_compatible(records: ExitRecords, macs: MacsInfo) -> None:
    """Raise :class:`DyceError` unless ``macs`` has the positions and exit types of ``records``.

    The one check of a records/macs_info pair (search, evaluation, selection, plots and the
    seed API all use it). Positions and exit-type counts must agree; where the macs_info names
    its heads, the names must be the records' exit types in the same order (``head[k]`` is
    exit type ``k``), since heads of the same count but another order would silently give
    every configuration the wrong MACs.
    """
    where = f"{records.source} vs {macs.source}"
    if records.num_positions != macs.num_positions:
        raise DyceError(
            f"records have {records.num_positions} positions but macs_info has "
            f"{macs.num_positions} (backbone.macs entries)", path=where, field="num_positions",
        )
    if records.num_exit_types != macs.num_exit_types:
        raise DyceError(
            f"records have {records.num_exit_types} exit types {list(records.exit_types)} but "
            f"macs_info has {macs.num_exit_types} {list(macs.head_names)}",
            path=where, field="exit_types",
        )
    if macs.heads_named and tuple(records.exit_types) != tuple(macs.head_names):
        raise DyceError(
            f"records have exit types {list(records.exit_types)} but macs_info's heads are "
            f"{list(macs.head_names)} (head[k] must be exit type k, same names, same order)",
            path=where, field="exit_types",
        )


def check_same_exit_table(a: ExitRecords, b: ExitRecords) -> None:
    """Raise :class:`DyceError` unless two records (e.g. train and validation) share positions,
    exit types and class count."""
    where = f"{a.source} vs {b.source}"
    for name in ("num_positions", "position_names", "exit_types", "num_classes"):
        left, right = getattr(a, name), getattr(b, name)
        if left != right:
            shown = (list(left), list(right)) if isinstance(left, tuple) else (left, right)
            raise DyceError(f"differ: {shown[0]} vs {shown[1]}", path=where, field=name)


def regroup_exit_types(records: ExitRecords, exit_types: Sequence[str]) -> ExitRecords:
    """The same exits read as ``T = len(exit_types)`` types per position (position-major).

    For records written without their exit types (``extra`` holds :data:`UNTYPED_KEY`): the
    arrays are unchanged, only ``exit_types`` and ``num_positions`` (``(E-1)/T + 1``) change,
    exactly as the original DyCE ``load_records`` split its flat exit list by the macs_info.
    """
    names = tuple(str(name) for name in exit_types)
    num_early = records.num_exits - 1
    if not names or num_early % len(names):
        raise DyceError(
            f"{num_early} early exits cannot be split into {len(names)} exit types {list(names)}",
            path=records.source, field="exit_types",
        )
    extra = {key: value for key, value in records.extra.items() if key != UNTYPED_KEY}
    return replace(
        records, exit_types=names, num_positions=num_early // len(names) + 1,
        position_names=None, extra=extra,
    )
