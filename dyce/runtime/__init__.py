"""Stage 8, runtime: a self-contained bundle, real early-exit inference, live budget switching.

- :mod:`dyce.runtime.inference`: ``build_bundle``, ``load_bundle``, ``EarlyExitRuntime`` (needs
  torch; its names load on first use, so importing this package stays cheap).
- :mod:`dyce.runtime.risk`: confidence bounds of a loss rate, fixed-sequence risk control.
- :mod:`dyce.runtime.selection`: the operating point chosen on a calibration split with a
  relative-accuracy guarantee (``dyce select``, ``dyce predict --risk``).
"""

import importlib

from dyce.runtime.risk import BOUNDS, RiskChoice, choose_by_risk, risk_losses, upper_bound
from dyce.runtime.selection import Candidate, Selection, select_operating_point

_TORCH_NAMES = {
    name: "inference"
    for name in (
        "EarlyExitRuntime", "FrontEntry", "RuntimeOutput", "build_bundle", "load_bundle",
        "prediction_summary",
    )
}

__all__ = [
    "BOUNDS",
    "Candidate",
    "EarlyExitRuntime",
    "FrontEntry",
    "RiskChoice",
    "RuntimeOutput",
    "Selection",
    "build_bundle",
    "choose_by_risk",
    "load_bundle",
    "prediction_summary",
    "risk_losses",
    "select_operating_point",
    "upper_bound",
]


def __getattr__(name: str):
    """Import the torch-dependent names on first use."""
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_TORCH_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
