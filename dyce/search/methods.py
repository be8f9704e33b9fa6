"""The search methods by name: :func:`search_configs` and the ``samethres`` baseline.

``onepass`` (:mod:`dyce.search.onepass`) and ``circular`` (:mod:`dyce.search.circular`; calibrated:
the round-by-round :mod:`dyce.search.circular_reference`) search one configuration per λ with
exact thresholds; ``samethres`` puts one exit type at every position with threshold
``clip(λ, 0, 1)``. Exact semantics and every tie rule: ``docs/semantics.md``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from dyce.errors import DyceError
from dyce.evaluate.exact import check_inputs, evaluate_config
from dyce.macs.info import MacsInfo
from dyce.records.format import ExitRecords
from dyce.search.circular import circular
from dyce.search.circular_reference import circular_by_rounds
from dyce.search.context import SearchContext, SearchResult
from dyce.search.cost import check_lambdas, cost_scale, evaluation_cost
from dyce.search.onepass import onepass

METHODS = ("onepass", "circular", "samethres")


def search_configs(
    records: ExitRecords,
    macs: MacsInfo | dict | str,
    method: str,
    lambdas: Sequence[float],
    *,
    normalize: bool = True,
    calibration: bool = False,
    progress: bool = True,
    exit_type: int = 0,
    max_rounds: int = 1000,
    threads: int | None = None,
) -> list[SearchResult]:
    """Search one configuration per λ (results in the order of ``lambdas``).

    Args:
        records: the search records.
        macs: ``macs_info`` (path, dictionary or :class:`MacsInfo`) of the same model.
        method: ``"onepass"``, ``"circular"`` or ``"samethres"``.
        lambdas: trade-off weights, each finite and ``>= 0`` (above 1 warns).
        normalize: normalised cost (default, as the original sweep) or relative figures.
        calibration: use the calibrated accuracy inside the cost (small data sets).
        progress: show a tqdm bar.
        exit_type: the exit type ``samethres`` puts at every position.
        max_rounds: most changes ``circular`` applies per λ.
        threads: worker threads computing the exit types' curves of one step in parallel
            (numpy releases the GIL); ``None`` = the CPUs this process may use from
            :data:`PARALLEL_MIN_SAMPLES` samples on, one thread below (where thread hand-offs
            cost more than they save). Results do not depend on it: every curve is computed as
            in one thread and combined in exit-type order.
    """
    info = check_inputs(records, macs)
    values = check_lambdas(lambdas)
    if method == "samethres":
        return samethres(records, info, values, exit_type=exit_type, normalize=normalize,
                         calibration=calibration)
    if method not in METHODS:
        raise DyceError(f"unknown search method {method!r}; choose from {', '.join(METHODS)}",
                        field="method")
    if not values:
        return []
    with SearchContext(records, info, normalize=normalize, calibration=calibration,
                       progress=progress, threads=threads) as context:
        if method == "onepass":
            return onepass(context, values)
        if calibration:  # the calibrated accuracy is not a sum over samples: no block curves
            return circular_by_rounds(context, values, max_rounds=max_rounds)
        return circular(context, values, max_rounds=max_rounds)


def samethres(
    records: ExitRecords,
    macs: MacsInfo | dict | str,
    lambdas: Sequence[float],
    *,
    exit_type: int = 0,
    normalize: bool = True,
    calibration: bool = False,
) -> list[SearchResult]:
    """Baseline: exit type ``exit_type`` at every candidate position, threshold ``clip(λ, 0, 1)``."""
    info = check_inputs(records, macs)
    values = check_lambdas(lambdas)
    if (isinstance(exit_type, bool) or not isinstance(exit_type, numbers.Integral)
            or not 0 <= exit_type < records.num_exit_types):
        raise DyceError(f"{exit_type!r} is not in [0, {records.num_exit_types})",
                        field="exit_type")
    scale = cost_scale(records, info, normalize=normalize)
    results = []
    for value in values:
        config = [[int(exit_type), min(max(value, 0.0), 1.0)]
                  for _ in range(records.num_positions - 1)]
        evaluation = evaluate_config(records, info, config, calibration=calibration)
        results.append(SearchResult("samethres", value, config, evaluation,
                                    evaluation_cost(evaluation, value, scale)))
    return results
