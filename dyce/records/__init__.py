"""Stage 3, records: what every exit predicts for every sample, on disk as Parquet.

- :mod:`dyce.records.format`: ``ExitRecords``, the Parquet schema, ``RecordWriter``, read/write.
- :mod:`dyce.records.npz`: safe reading of the original ``.npz`` records, conversion, and
  ``load_any_records`` for either format.
- :mod:`dyce.records.recorder`: the seed API ``OutputRecorder`` (torch-free).
- :mod:`dyce.records.recording`: run a ``MultiExitNetwork`` over a split (needs torch; its names
  load on first use, so importing this package stays cheap).
"""

import importlib

from dyce.records.format import (
    ExitRecords,
    RecordWriter,
    check_compatible,
    read_records,
    read_records_metadata,
    scan_records,
    write_records,
)
from dyce.records.npz import convert_npz, load_any_records, read_npz_records
from dyce.records.recorder import OutputRecorder

_TORCH_NAMES = {"exit_topk": "recording", "record_split": "recording"}

__all__ = [
    "ExitRecords",
    "OutputRecorder",
    "RecordWriter",
    "check_compatible",
    "convert_npz",
    "exit_topk",
    "load_any_records",
    "read_npz_records",
    "read_records",
    "read_records_metadata",
    "record_split",
    "scan_records",
    "write_records",
]


def __getattr__(name: str):
    """Import the torch-dependent names on first use."""
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_TORCH_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
