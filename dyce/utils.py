"""Seed API path ``dyce.utils.OutputRecorder`` (see :mod:`dyce.records.recorder`)."""

from dyce.records.recorder import OutputRecorder

__all__ = ["OutputRecorder"]
