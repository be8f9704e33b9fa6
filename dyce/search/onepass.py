"""``onepass``: decide the positions in order, each once, for every λ at the same time.

At position ``p`` (earlier positions decided, later ones empty) each λ takes the cheapest of
"no exit" and every exit type's cheapest cut (ties: "none", then the later exit type), then
moves on. The λs that take the same decision share the rest of the walk: the search walks a
tree of *decision prefixes*, and at each prefix scans every exit type once for all its λs (one
:class:`~dyce.search.cuts.CurveSet` of all types, or one curve per type in worker threads or
when calibrated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dyce.evaluate.exact import exceeds
from dyce.search.calibrated import CalibratedCurve
from dyce.search.context import SearchContext, SearchResult, Situation
from dyce.search.cost import cost
from dyce.search.curves import best_cuts, exit_curve
from dyce.search.cuts import BlockCurve


@dataclass
class StepOptions:
    """The exit types' options at one onepass step: per type (cheapest cut per λ, its cost
    per λ), and ``threshold(exit_type, cut)``."""

    options: list[tuple[np.ndarray, np.ndarray]]
    threshold: Callable[[int, int], float]


@dataclass
class DecisionPrefix:
    """A decision prefix of onepass: positions ``0 … len(config)-1`` decided, later ones empty."""

    arrive: np.ndarray | None  # bool (N,) samples not yet left (None: all)
    head_macs_before: float  # MACs of the enabled heads so far
    config: list
    exit_counts: np.ndarray  # int64 (P,) samples left at each decided position
    correct_counts: np.ndarray  # int64 (P,) of them right
    left_macs: float  # total MACs of the samples that left
    search_cost: np.ndarray | None  # cost of the last decision, per member λ


def onepass(context: SearchContext, lambdas: list[float]) -> list[SearchResult]:
    """Onepass for every λ, sharing each decision prefix between the λs that took it."""
    lams = np.asarray(lambdas, dtype=np.float64)
    results: list[SearchResult | None] = [None] * len(lambdas)
    num_positions = context.num_positions
    start = DecisionPrefix(
        arrive=None, head_macs_before=0.0, config=[],
        exit_counts=np.zeros(num_positions, dtype=np.int64),
        correct_counts=np.zeros(num_positions, dtype=np.int64), left_macs=0.0,
        search_cost=None,
    )
    with context.progress_bar(len(lambdas), "onepass") as bar:
        stack = [(start, np.arange(len(lambdas)))]
        while stack:
            node, ids = stack.pop()
            position = len(node.config)
            if position == num_positions - 1:
                finish(context, node, ids, lams, results)
                bar.update(ids.shape[0])
                continue
            stack.extend(reversed(step(context, node, ids, lams)))
    return results  # type: ignore[return-value]


def prefix_situation(context: SearchContext, node: DecisionPrefix) -> Situation:
    """The situation at the prefix's next position: later positions are empty, so every
    arriving sample's rest fate is the final head."""
    p = len(node.config)
    arriving = context.num_samples if node.arrive is None else int(np.count_nonzero(node.arrive))
    right = (context.final_correct_count if node.arrive is None
             else int(np.count_nonzero(context.final_correct & node.arrive)))
    rest_counts = np.zeros(context.num_positions, dtype=np.int64)
    rest_correct = np.zeros(context.num_positions, dtype=np.int64)
    rest_counts[-1], rest_correct[-1] = arriving, right
    table = np.zeros(context.num_positions, dtype=np.float64)
    table[-1] = float(context.info.ori_macs) + node.head_macs_before
    return Situation(p, node.arrive, None, table, node.head_macs_before, node.exit_counts,
                      node.correct_counts, node.left_macs, rest_counts, rest_correct)


def step(context: SearchContext, node: DecisionPrefix, ids: np.ndarray,
         lams: np.ndarray) -> list[tuple[DecisionPrefix, np.ndarray]]:
    """Decide the prefix's next position for its λs ``ids``: one child prefix per distinct
    decision, with the λs that took it."""
    situation = prefix_situation(context, node)
    p = situation.position
    lam = lams[ids]
    best_cost = np.full(ids.shape[0], np.inf)
    choice = np.full(ids.shape[0], -1)
    cut_index = np.zeros(ids.shape[0], dtype=np.int64)
    none_acc, none_macs = context.none_option(situation)
    none_cost = cost(none_acc, none_macs, lam, context.scale)
    thresholds = step_options(context, situation, lam)
    for exit_type, (best, costs) in enumerate(thresholds.options):
        better = costs <= best_cost  # later types win ties, as the original
        best_cost = np.where(better, costs, best_cost)
        choice = np.where(better, exit_type, choice)
        cut_index = np.where(better, best, cut_index)
    better = none_cost <= best_cost  # "none" wins ties
    best_cost = np.where(better, none_cost, best_cost)
    choice = np.where(better, -1, choice)

    children = []
    keys = np.stack([choice, np.where(choice < 0, 0, cut_index)], axis=1)
    unique, group = np.unique(keys, axis=0, return_inverse=True)
    for g, (exit_type, index) in enumerate(unique.tolist()):
        members = np.flatnonzero(group.ravel() == g)
        member_cost = best_cost[members]
        if exit_type < 0:
            child = DecisionPrefix(node.arrive, node.head_macs_before, node.config + [(-1, 1.0)],
                                 node.exit_counts, node.correct_counts, node.left_macs,
                                 member_cost)
        else:
            threshold = thresholds.threshold(exit_type, index)
            row = context.records.exit_index(p, exit_type)
            leaving = exceeds(context.confs[row], threshold)
            if node.arrive is not None:
                leaving &= node.arrive
            exits = int(np.count_nonzero(leaving))
            if exits != int(index):  # the threshold must reproduce the cut
                raise AssertionError(f"threshold {threshold!r} lets {exits} samples leave "
                                     f"at position {p}, not {int(index)}")
            head = float(context.head[exit_type, p])
            exit_counts = node.exit_counts.copy()
            correct_counts = node.correct_counts.copy()
            exit_counts[p] = exits
            correct_counts[p] = np.count_nonzero(leaving & context.correct[row])
            leave_cost = float(context.backbone[p]) + (node.head_macs_before + head)
            arrive = ~leaving if node.arrive is None else node.arrive & ~leaving
            child = DecisionPrefix(arrive, node.head_macs_before + head,
                                 node.config + [(exit_type, threshold)],
                                 exit_counts, correct_counts,
                                 node.left_macs + exits * leave_cost, member_cost)
        children.append((child, ids[members]))
    return children


def step_options(context: SearchContext, situation: Situation,
                 lam: np.ndarray) -> StepOptions:
    """Every exit type's cheapest cut and cost per λ at a onepass situation: all types in
    one :class:`CurveSet` in one thread, else one curve per type (in worker threads, or
    calibrated)."""
    if not context.threaded and not context.calibration:
        curves = context.curve_set(situation)
        cut, acc, macs = curves.best(lam, context.scale.acc_span, context.scale.macs_span)
        costs = cost(acc, macs, lam[None, :], context.scale)
        return StepOptions(list(zip(cut, costs, strict=True)),
                        lambda k, j: float(curves.threshold(k, np.asarray([j]))[0]))

    def curve_and_best(exit_type: int) -> tuple[CalibratedCurve | BlockCurve, np.ndarray,
                                                 np.ndarray]:
        curve = exit_curve(context, situation, exit_type)
        return (curve, *best_cuts(context, curve, lam))

    found = context.map(curve_and_best, range(context.num_types))
    return StepOptions([(best, costs) for _, best, costs in found],
                    lambda k, j: float(found[k][0].threshold(np.asarray([j]))[0]))


def finish(context: SearchContext, node: DecisionPrefix, ids: np.ndarray,
           lams: np.ndarray, results: list) -> None:
    """Store the results of the λs ``ids`` whose prefix decides every position."""
    situation = prefix_situation(context, node)
    exit_counts = node.exit_counts + situation.rest_counts
    correct_counts = node.correct_counts + situation.rest_correct_counts
    for i, member in enumerate(ids.tolist()):
        search_cost = None if node.search_cost is None else float(node.search_cost[i])
        results[member] = context.result("onepass", float(lams[member]), node.config,
                                      exit_counts, correct_counts, search_cost)
