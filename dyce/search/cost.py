"""The cost the search minimises, and how accuracy and MACs are scaled into it.

For a trade-off weight λ (see :func:`cost`)::

    cost = λ·(1 − acc) + (1 − λ)·macs

with ``acc`` and ``macs`` the configuration's accuracy and mean MACs per sample, shifted and
scaled by a :class:`CostScale` measured on the search records (:func:`cost_scale`).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dyce.errors import DyceError
from dyce.evaluate.exact import Evaluation, check_inputs
from dyce.macs.info import MacsInfo
from dyce.records.format import ExitRecords

#: ``circular`` applies a change only when it lowers the cost by more than this (absolute;
#: costs are O(1)), so floating-point noise between equal-cost configurations cannot cycle.
IMPROVEMENT_TOLERANCE = 1e-13


@dataclass(frozen=True)
class CostScale:
    """How raw accuracy and mean MACs enter the cost.

    ``acc = (raw_acc − acc_offset) / acc_span`` and ``macs = (raw_macs − macs_offset) / macs_span``.
    """

    acc_offset: float
    acc_span: float
    macs_offset: float
    macs_span: float


def cost_scale(records: ExitRecords, macs: MacsInfo | dict | str, *,
               normalize: bool = True) -> CostScale:
    """The cost's scale on ``records`` (the search records).

    Normalised: ``acc_offset`` = accuracy of exit type 0 at position 0 (``a_min``),
    ``acc_span = a_base − a_min`` with ``a_base`` the final head's accuracy, ``macs_offset =
    backbone.macs[0]``, ``macs_span = ori_macs − backbone.macs[0]``. Un-normalised: relative
    accuracy and relative MACs (offsets 0, spans ``a_base`` and ``ori_macs``). A span that is
    zero falls back to 1 (accuracy) or ``ori_macs`` (MACs); a negative span is used by its
    magnitude, so the cost always rewards accuracy and penalises MACs.
    """
    info = check_inputs(records, macs)
    base_acc = records.final_accuracy
    ori = float(info.ori_macs)
    if normalize:
        first = records.correct[records.exit_index(0, 0)] if records.num_positions > 1 else None
        min_acc = float(first.mean()) if first is not None else base_acc
        acc_offset, acc_span = min_acc, abs(base_acc - min_acc)
        macs_offset, macs_span = float(info.backbone_macs[0]), abs(ori - float(info.backbone_macs[0]))
    else:
        acc_offset, acc_span, macs_offset, macs_span = 0.0, base_acc, 0.0, ori
    return CostScale(acc_offset, acc_span if acc_span > 0 else 1.0, macs_offset,
                     macs_span if macs_span > 0 else ori)


def cost(raw_acc, raw_macs, lambda_, scale: CostScale):
    """``λ·(1 − acc) + (1 − λ)·macs`` with ``acc``, ``macs`` scaled by ``scale``.

    ``raw_acc`` (accuracy in ``[0, 1]``, calibrated when the search is), ``raw_macs`` (mean MACs
    per sample) and ``lambda_`` may be floats or broadcastable numpy arrays.
    """
    acc = (raw_acc - scale.acc_offset) / scale.acc_span
    macs = (raw_macs - scale.macs_offset) / scale.macs_span
    return lambda_ * (1.0 - acc) + (1.0 - lambda_) * macs


def evaluation_cost(evaluation: Evaluation, lambda_: float, scale: CostScale) -> float:
    """:func:`cost` of an :class:`~dyce.evaluate.exact.Evaluation`."""
    return float(cost(evaluation.raw_acc, evaluation.raw_macs, lambda_, scale))


def empty_config(num_positions: int) -> list[list]:
    """The configuration with no exit: ``[[-1, 1.0]] * (P-1)``."""
    return [[-1, 1.0] for _ in range(num_positions - 1)]


def check_lambdas(lambdas: Sequence[float]) -> list[float]:
    """Validate λ values: finite and ``>= 0``; values above 1 are accepted with a warning."""
    if isinstance(lambdas, (str, bytes)) or not isinstance(lambdas, (Sequence, np.ndarray)):
        raise DyceError(f"must be a list of numbers, got {lambdas!r}", field="lambda")
    values = []
    for value in lambdas:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise DyceError(f"{value!r} is not a number", field="lambda")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise DyceError(f"{value!r} must be a finite number >= 0", field="lambda")
        values.append(value)
    above = [v for v in values if v > 1]
    if above:
        warnings.warn(f"lambda above 1 ({above[:3]}…) rewards MACs: the search will prefer "
                      "slower configurations", stacklevel=3)
    return values
