"""``circular`` round by round: the reference the fast :mod:`dyce.search.circular` must equal,
and the search the calibrated ``circular`` runs.

Start from the empty configuration; each round, every λ applies the single change (one
position's exit type and threshold, or "none") that lowers its cost most, the first in position,
then exit type, then "none" order on ties, and only by more than
:data:`~dyce.search.cost.IMPROVEMENT_TOLERANCE`; a λ stops when no change does. λs whose
configurations coincide share the work, and the best option at a position is cached per
(position, configuration elsewhere, λ) for this round and the next.
"""

from __future__ import annotations

import warnings

import numpy as np

from dyce.search.context import SearchContext, SearchResult
from dyce.search.cost import IMPROVEMENT_TOLERANCE, cost
from dyce.search.curves import best_cuts, exit_curve
from dyce.search.fates import ConfigurationFates


def circular_by_rounds(context: SearchContext, lambdas: list[float], *,
                       max_rounds: int = 1000) -> list[SearchResult]:
    """Circular search for every λ, round by round; λs whose configurations coincide share
    the work."""
    lams = np.asarray(lambdas, dtype=np.float64)
    results: list[SearchResult | None] = [None] * len(lambdas)
    start = tuple((-1, 1.0) for _ in range(context.num_positions - 1))
    active: dict[tuple, list[int]] = {start: list(range(len(lambdas)))}
    previous_cache: dict = {}
    rounds = 0
    stopped = False
    with context.progress_bar(len(lambdas), "circular") as bar:
        while active:
            cache: dict = {}
            next_active: dict[tuple, list[int]] = {}
            for config, members in active.items():
                ids = np.asarray(members)
                node = ConfigurationFates(context, config)
                current = cost(node.acc, node.macs, lams[ids], context.scale)
                best_cost, change = best_change(context, node, lams[ids], cache, previous_cache)
                improve = best_cost < current - IMPROVEMENT_TOLERANCE
                stopped = stopped or bool(improve.any() and rounds >= max_rounds)
                for i, member in enumerate(members):
                    if improve[i] and rounds < max_rounds:
                        position, exit_type, threshold = change[i]
                        updated = list(config)
                        updated[position] = (exit_type, threshold)
                        next_active.setdefault(tuple(updated), []).append(member)
                    else:
                        results[member] = context.result("circular", float(lams[member]),
                                                      list(config), node.exit_counts,
                                                      node.correct_counts, None)
                        bar.update(1)
            active, previous_cache = next_active, cache
            rounds += 1
    if stopped:  # a λ could still improve when the cap stopped it
        warnings.warn(f"circular search stopped after max_rounds={max_rounds}", stacklevel=3)
    return results  # type: ignore[return-value]


def best_change(context: SearchContext, node: ConfigurationFates, lam: np.ndarray,
                cache: dict, previous_cache: dict) -> tuple[np.ndarray, list]:
    """Per λ: the cheapest single change (first in position, type, none order on ties).

    The best option at ``p`` depends only on the configuration elsewhere, so it is cached
    per (``p``, configuration elsewhere, λ) for this round and the next (where the λs that
    just changed ``p`` look it up again).
    """
    best_cost = np.full(lam.shape[0], np.inf)
    change: list = [None] * lam.shape[0]
    for p in range(context.num_positions - 1):
        key = (p, node.config[:p] + node.config[p + 1:])
        entry = cache.get(key)
        if entry is None:
            entry = previous_cache.get(key, {})
            cache[key] = entry
        missing = [i for i, value in enumerate(lam.tolist()) if value not in entry]
        if missing:
            situation = node.situation(p)
            todo = lam[missing]

            def option(exit_type: int, situation=situation, todo=todo) -> tuple:
                curve = exit_curve(context, situation, exit_type)
                best, costs = best_cuts(context, curve, todo)
                return costs, curve.threshold(best)

            options = context.map(option, range(context.num_types))
            none_acc, none_macs = context.none_option(situation)
            none_costs = cost(none_acc, none_macs, todo, context.scale)
            for j, value in enumerate(todo.tolist()):
                entry[value] = ([(float(c[j]), float(t[j])) for c, t in options],
                                float(none_costs[j]))
        for i, value in enumerate(lam.tolist()):
            per_type, none_cost = entry[value]
            for exit_type, (option_cost, threshold) in enumerate(per_type):
                if option_cost < best_cost[i]:
                    best_cost[i] = option_cost
                    change[i] = (p, exit_type, threshold)
            if node.config[p][0] >= 0 and none_cost < best_cost[i]:
                best_cost[i] = none_cost
                change[i] = (p, -1, 1.0)
    return best_cost, change
