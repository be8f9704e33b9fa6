"""Safe reading of the original DyCE ``.npz`` records and their conversion to Parquet.

The original ``OutputRecorder`` saved ``np.savez_compressed(path, label=(N, 1) int16,
preds=(E, N, topk) int16, confs=(E, N, topk) float32[, meta_info=np.array(dict)])`` with exits
position-major and the final head last, and read it back with ``allow_pickle=True``, which runs
arbitrary code from the file. Here everything is loaded with ``allow_pickle=False``: a pickled
``meta_info`` is refused, never executed, or on request (``skip_pickled_meta_info``) left unread.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dyce.errors import DyceError
from dyce.macs.info import MacsInfo, load_macs_info
from dyce.records.format import (
    UNTYPED_KEY,
    ExitRecords,
    check_compatible,
    pred_dtype,
    read_records,
    regroup_exit_types,
    validate_values,
    write_records,
)

ExitTypesOrMacs = Sequence[str] | str | MacsInfo | dict | os.PathLike

_PICKLE_REFUSAL = (
    "holds a pickled Python object, which was not loaded because unpickling can execute "
    "arbitrary code; re-save the record without meta_info (np.savez(path, label=..., "
    "preds=..., confs=...)) or pass the information as plain arrays"
)
_META_INFO_SKIP_HINT = (
    "; or leave meta_info unread and load the arrays with skip_pickled_meta_info=True "
    "(dyce import-npz --skip-meta-info)"
)


def as_macs_info(exit_types_or_macs: ExitTypesOrMacs | None) -> MacsInfo | None:
    """The macs_info if the argument is one (object, dict, path, or ``*.json`` string)."""
    value = exit_types_or_macs
    if isinstance(value, (MacsInfo, dict, os.PathLike)) or (
        isinstance(value, str) and value.lower().endswith(".json")
    ):
        return load_macs_info(value)
    return None


def exit_type_names(exit_types_or_macs: ExitTypesOrMacs) -> tuple[str, ...]:
    """Exit-type names from a list of names, a ``"a,b,c"`` string, or a macs_info (its head
    names; a :class:`MacsInfo`, a dictionary, or the path of a JSON file)."""
    macs = as_macs_info(exit_types_or_macs)
    if macs is not None:
        return macs.head_names
    if isinstance(exit_types_or_macs, str):
        exit_types_or_macs = exit_types_or_macs.split(",")
    names = tuple(str(name).strip() for name in exit_types_or_macs)
    if not names or any(not name for name in names):
        raise DyceError(f"{list(names)} is not a list of non-empty names", field="exit_types")
    return names


def _array(npz: Any, key: str, where: str, required: bool = True,
           skip_pickled: bool = False) -> np.ndarray | None:
    """``npz[key]`` loaded without pickle, or a :class:`DyceError` naming the key.

    A pickled (object) array is refused; with ``skip_pickled`` it is left unread (numpy stops at
    the array's header, before any unpickling) with a warning, and None is returned.
    """
    if key not in npz.files:
        if not required:
            return None
        raise DyceError(f"missing; the file has {sorted(npz.files)}", path=where, field=key)
    if f"{key}.npy" not in npz.zip.namelist():
        raise DyceError(f"the archive member {key!r} is not a .npy array (np.savez writes "
                        f"'{key}.npy')", path=where, field=key)
    try:
        return npz[key]
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            if skip_pickled:
                warnings.warn(f"{where}: field '{key}': holds a pickled Python object; skipped "
                              "without unpickling it", UserWarning, stacklevel=3)
                return None
            hint = _META_INFO_SKIP_HINT if key == "meta_info" else ""
            raise DyceError(_PICKLE_REFUSAL + hint, path=where, field=key) from None
        raise DyceError(f"cannot be read ({error})", path=where, field=key) from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise DyceError(f"corrupt or truncated ({error})", path=where, field=key) from None


def read_npz_records(
    path: str | os.PathLike,
    exit_types: ExitTypesOrMacs,
    *,
    num_classes: int | None = None,
    model: str = "",
    dataset: str = "",
    split: str = "",
    skip_pickled_meta_info: bool = False,
) -> ExitRecords:
    """Read original DyCE ``.npz`` records safely.

    Args:
        path: ``.npz`` with ``label`` ``(N, 1)`` or ``(N,)``, ``preds`` int ``(E, N, topk)``,
            ``confs`` float ``(E, N, topk)`` and optionally a non-object ``meta_info``.
        exit_types: the ``T`` exit-type names (the file does not store them), a comma-separated
            string, or a macs_info whose head names are used. ``P = (E - 1) / T + 1``.
        num_classes: ``C``; default ``max(label, preds) + 1``.
        model, dataset, split: provenance stored with the records.
        skip_pickled_meta_info: a pickled ``meta_info`` (an object array, as the original
            release saved a dict) is left unread, never unpickled, with a warning, instead of
            refused with :class:`DyceError`.

    Returns:
        :class:`ExitRecords` (labels int64, preds int16/int32, confs float32); a plain-array
        ``meta_info`` is kept in ``extra["meta_info"]``.
    """
    where = str(path)
    names = exit_type_names(exit_types)
    if not Path(path).is_file():
        raise DyceError("file not found", path=where)
    if not _is_zip(path):
        raise DyceError(f"not an .npz archive (a zip of .npy arrays){_format_hint(path)}",
                        path=where)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DyceError(f"not a readable .npz file ({error})", path=where) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DyceError("is a single .npy array, not an .npz archive of records", path=where)
    with npz:
        labels = _array(npz, "label", where)
        preds = _array(npz, "preds", where)
        confs = _array(npz, "confs", where)
        meta_info = _array(npz, "meta_info", where, required=False,
                           skip_pickled=skip_pickled_meta_info)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DyceError(f"must be integers (N,) or (N, 1), got {labels.dtype} {labels.shape}",
                        path=where, field="label")
    num_samples = labels.shape[0]
    if num_samples == 0:
        raise DyceError("the records hold no samples", path=where, field="label")
    integer_preds = np.issubdtype(preds.dtype, np.integer)
    if preds.ndim != 3 or preds.shape[1] != num_samples or not integer_preds:
        raise DyceError(f"must be integers (E, {num_samples}, topk), got {preds.dtype} "
                        f"{preds.shape}", path=where, field="preds")
    if confs.shape != preds.shape or not np.issubdtype(confs.dtype, np.floating):
        raise DyceError(f"must be floats of the shape of preds {preds.shape}, got {confs.dtype} "
                        f"{confs.shape}", path=where, field="confs")
    num_exits, num_types = preds.shape[0], len(names)
    if (num_exits - 1) % num_types:
        raise DyceError(
            f"{num_exits} exits = (P - 1) x T + 1 is impossible with T = {num_types} exit types "
            f"{list(names)}: {num_exits - 1} is not divisible by {num_types}",
            path=where, field="preds",
        )
    if num_classes is None:
        num_classes = int(max(labels.max(), preds.max())) + 1
    confs = confs.astype(np.float32, copy=False)
    validate_values(labels, preds, confs, num_classes, where=where)
    extra = {} if meta_info is None else {"meta_info": meta_info.tolist()}
    return ExitRecords(
        labels=labels.astype(np.int64, copy=False),
        preds=preds.astype(pred_dtype(num_classes), copy=False),
        confs=confs,
        exit_types=names,
        num_positions=(num_exits - 1) // num_types + 1,
        num_classes=num_classes,
        model=model, dataset=dataset, split=split, source=where, extra=extra,
    )


def convert_npz(
    path: str | os.PathLike,
    out: str | os.PathLike,
    exit_types: ExitTypesOrMacs,
    *,
    num_classes: int | None = None,
    model: str = "",
    dataset: str = "",
    split: str = "",
    row_group_size: int = 65536,
    skip_pickled_meta_info: bool = False,
) -> ExitRecords:
    """Read original ``.npz`` records safely and write them as dyce Parquet records to ``out``.

    When ``exit_types`` is a macs_info, the record must also match its number of positions
    (checked before anything is written). ``skip_pickled_meta_info``: see
    :func:`read_npz_records`.
    """
    macs = as_macs_info(exit_types)
    records = read_npz_records(path, exit_types if macs is None else macs,
                               num_classes=num_classes, model=model, dataset=dataset, split=split,
                               skip_pickled_meta_info=skip_pickled_meta_info)
    if macs is not None:
        check_compatible(records, macs)
    write_records(out, records, row_group_size=row_group_size)
    return records


def _is_zip(path: str | os.PathLike) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def _format_hint(path: str | os.PathLike) -> str:
    """What the file looks like instead, from its first bytes (for error messages)."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    if head.startswith(b"PAR1"):
        return "; it is Parquet, e.g. dyce records, which need no import"
    if head.startswith(b"\x93NUMPY"):
        return "; it is a single .npy array"
    return ""


def load_any_records(
    path: str | os.PathLike, exit_types_or_macs: ExitTypesOrMacs | None = None, *,
    skip_pickled_meta_info: bool = False,
) -> ExitRecords:
    """Read records in either format, chosen by content (zip = original ``.npz``, else Parquet).

    For ``.npz`` the exit types are required (names or a macs_info: object, dictionary or JSON
    path). For Parquet they are optional; when given they must agree with the file (a macs_info
    via :func:`dyce.records.format.check_compatible`, names exactly), except for records written
    without exit types (the seed ``OutputRecorder``), whose exits are regrouped by them.
    ``skip_pickled_meta_info`` applies to ``.npz`` records (see :func:`read_npz_records`).
    """
    if not Path(path).is_file():
        raise DyceError("file not found", path=path)
    macs = as_macs_info(exit_types_or_macs)
    if macs is not None:
        exit_types_or_macs = macs
    if _is_zip(path):
        if exit_types_or_macs is None:
            raise DyceError(
                "original .npz records do not name their exit types; pass the exit-type names "
                "or the macs_info", path=path, field="exit_types",
            )
        records = read_npz_records(path, exit_types_or_macs,
                                   skip_pickled_meta_info=skip_pickled_meta_info)
    else:
        records = read_records(path)
        if exit_types_or_macs is not None and records.extra.get(UNTYPED_KEY):
            names = macs.head_names if macs is not None else exit_type_names(exit_types_or_macs)
            records = regroup_exit_types(records, names)
        elif exit_types_or_macs is not None and macs is None:
            names = exit_type_names(exit_types_or_macs)
            if names != records.exit_types:
                raise DyceError(f"the file has {list(records.exit_types)}, expected {list(names)}",
                                path=path, field="exit_types")
    if macs is not None:
        check_compatible(records, macs)
    return records
