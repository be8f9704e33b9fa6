"""One exit type's cuts in one situation, whichever curve the search uses.

The plain search uses a :class:`~dyce.search.cuts.BlockCurve` (the exact block scan over the
exit's whole sorted order); the calibrated search, whose accuracy is not a sum over samples, a
:class:`~dyce.search.calibrated.CalibratedCurve` over the arriving samples.
"""

from __future__ import annotations

import numpy as np

from dyce.search.calibrated import CalibratedCurve, calibrated_curve
from dyce.search.context import SearchContext, Situation
from dyce.search.cost import cost
from dyce.search.cuts import BlockCurve


def best_cuts(context: SearchContext, curve: CalibratedCurve | BlockCurve,
              lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per λ: the cheapest cut of ``curve`` (arriving leavers) and its cost."""
    if isinstance(curve, CalibratedCurve):
        return curve.best(lambdas, context.scale)
    cut, acc, macs = curve.best(lambdas, context.scale.acc_span, context.scale.macs_span)
    return cut, cost(acc, macs, lambdas, context.scale)


def exit_curve(context: SearchContext, situation: Situation,
               exit_type: int) -> CalibratedCurve | BlockCurve:
    """Every cut of ``exit_type`` at the situation's position (:class:`BlockCurve`; the
    calibrated search, whose accuracy is not a sum over samples, uses :class:`CalibratedCurve`)."""
    if not context.calibration:
        return context.block_curve(situation, exit_type)
    return calibrated_curve(context, situation, exit_type)

