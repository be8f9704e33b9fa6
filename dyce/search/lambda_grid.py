"""λ grids of the DyCE sweep: exact decimal steps, one rule for the range end, a size limit.

``START, START+STEP, …, STOP`` (``STOP`` included when the grid reaches it) is the one rule of
``dyce search --lambda-range`` and the workflow's ``lambdas: {start, stop, step}``. Values are
computed in decimal, not by repeated float addition, so a grid from 0.5 in steps of 0.01 ends at
exactly 1.0 (``numpy.arange`` gives 1.0000000000000004, a λ above 1 that rewards MACs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal

import numpy as np

from dyce.errors import DyceError

#: Most λ values one search accepts (a grid of 0.5 … 1.05 step 0.001, the paper's finest, has
#: 551). Larger grids are refused before anything is allocated.
MAX_LAMBDAS = 10_000

# Grid positions within this fraction of a step of STOP count as reaching it (float noise).
_END_SLACK = 1e-9


def _decimals(value: float) -> int | None:
    """Decimal places of ``value``'s shortest repr (``0.01`` → 2), or None beyond 15."""
    exponent = Decimal(repr(float(value))).normalize().as_tuple().exponent
    places = max(0, -int(exponent))
    return places if places <= 15 else None


def grid_size(start: float, stop: float, step: float, *, include_stop: bool = True,
              field: str = "lambda-range") -> int:
    """Number of values of :func:`lambda_range` (checked like it, nothing allocated)."""
    for name, value in (("START", start), ("STOP", stop), ("STEP", step)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise DyceError(f"{name} = {value!r} is not a finite number", field=field)
    if step <= 0 or stop < start:
        raise DyceError(f"range {start} {stop} {step} needs START <= STOP and STEP > 0",
                        field=field)
    spans = (stop - start) / step
    if include_stop:
        count = math.floor(spans + _END_SLACK) + 1
    else:
        count = max(0, math.ceil(spans - _END_SLACK))
    return count


def lambda_range(start: float, stop: float, step: float, *, include_stop: bool = True,
                 field: str = "lambda-range", limit: int = MAX_LAMBDAS) -> list[float]:
    """``START, START+STEP, …`` up to ``STOP`` (included when reached, unless ``include_stop``
    is false: then strictly below it, as ``numpy.arange``), each value the float nearest the
    exact decimal ``START + i·STEP``.

    Raises :class:`DyceError` naming ``field`` for a non-finite or negative bound, a step
    ``<= 0``, ``STOP < START`` or more than ``limit`` values (:data:`MAX_LAMBDAS`).
    """
    count = grid_size(start, stop, step, include_stop=include_stop, field=field)
    if count > limit:
        raise DyceError(f"range {start} {stop} {step} has {count} λ values, more than the "
                        f"maximum {limit}; use a larger step", field=field)
    index = np.arange(count, dtype=np.int64)
    places = [_decimals(start), _decimals(step)]
    if None not in places:
        scale = 10 ** max(places)
        first, increment = round(start * scale), round(step * scale)
        if abs(first) + increment * count < 2**53:
            # Integers below 2**53 are exact in float64, and one division rounds correctly.
            values = (first + increment * index) / scale
            return lambda_values(values.tolist(), field=field)
    return lambda_values((start + step * index).tolist(), field=field)


def lambda_values(values: Iterable[float], *, field: str = "lambda",
                  limit: int = MAX_LAMBDAS) -> list[float]:
    """``values`` as floats if every one is a finite number ``>= 0`` and there are at most
    ``limit``; :class:`DyceError` naming ``field`` otherwise."""
    checked = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not math.isfinite(value) or value < 0:
            raise DyceError(f"λ = {value!r} is not a finite number >= 0", field=field)
        checked.append(float(value))
        if len(checked) > limit:
            raise DyceError(f"more than the maximum {limit} λ values", field=field)
    return checked
