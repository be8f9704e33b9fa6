"""Stage 4, MACs: what each backbone stage and exit head costs.

- :mod:`dyce.macs.info`: ``MacsInfo`` and the seed's ``macs_info`` JSON format (torch-free).
- :mod:`dyce.macs.counting`: MACs counted with thop for a backbone and its exit heads (needs
  torch; its names load on first use, so importing this package stays cheap).
"""

import importlib

from dyce.macs.info import MacsInfo, load_macs_info, parse_macs_info, save_macs_info

_TORCH_NAMES = {"count_macs": "counting", "macs_info_for": "counting", "write_macs_info": "counting"}

__all__ = [
    "MacsInfo",
    "count_macs",
    "load_macs_info",
    "macs_info_for",
    "parse_macs_info",
    "save_macs_info",
    "write_macs_info",
]


def __getattr__(name: str):
    """Import the torch-dependent names on first use."""
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_TORCH_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
