"""Candidate configurations around each searched configuration: fronts that hold on unseen data.

A threshold fitted exactly on a small search split sits at the edge of what that split allows,
so on new data it lets slightly too many samples leave. Each searched configuration therefore
comes with two one-parameter families of more or less conservative neighbours, and the front is
built from all of them on the validation split:

* ``raise:f`` — every enabled threshold raised toward 1 by the fraction ``f``:
  ``t' = t + f·(1 − t)`` for ``f`` in :data:`RAISE_FRACTIONS` (the same exits, fewer leavers,
  each position in proportion to the room it has left);
* ``shared:s`` — one threshold ``s`` at every enabled exit of the searched configuration, for
  ``s`` in :data:`SHARED_THRESHOLDS` (the searched exit set with a global threshold, so the
  candidates contain a global-threshold sweep on every exit set DyCE chooses).

The searched configuration itself is the row ``searched``. Rows of one λ are a function of that
λ's searched configuration only; a candidate equal to an earlier one of the same λ is dropped
(``searched`` first, then ``raise`` in ascending ``f``, then ``shared`` in ascending ``s``).
``candidates="searched"`` keeps the original DyCE output (one row per λ).

Every candidate's figures are exact: a family of ``K`` threshold vectors that rise together is
evaluated in one pass (:func:`family_counts`) whose counts equal
:func:`dyce.evaluate.exact.evaluate_config`'s, and the figures come from the same
:func:`~dyce.evaluate.exact.evaluation_from_counts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dyce.errors import DyceError
from dyce.evaluate.exact import check_inputs, evaluation_from_counts, exceeds, position_macs
from dyce.macs.info import MacsInfo
from dyce.records.format import ExitRecords
from dyce.search.context import SearchResult
from dyce.search.cost import cost_scale, evaluation_cost
from dyce.search.methods import search_configs

#: The candidate sets a DyCE search can write: its neighbours too (default), or the searched
#: configurations only (the original DyCE output).
CANDIDATE_SETS = ("dense", "searched")

#: The searches whose results get neighbours (``samethres`` is a fixed-threshold baseline).
DENSE_METHODS = ("onepass", "circular")

#: Fractions ``f`` of the ``raise`` family, ``t' = t + f·(1 − t)``.
RAISE_FRACTIONS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

#: Thresholds ``s`` of the ``shared`` family: 0.00, 0.01, …, 1.00 (the global-threshold grid).
SHARED_THRESHOLDS = tuple(float(v) for v in np.round(np.arange(101) / 100, 2))


@dataclass(frozen=True)
class CandidateResult(SearchResult):
    """A :class:`~dyce.search.SearchResult` that is one candidate of its λ.

    ``candidate``: ``"searched"``, ``"raise:<f>"`` or ``"shared:<s>"`` (see the module
    docstring); ``evaluation`` holds the candidate's exact figures on the search records and
    ``cost`` the λ-cost of those figures.
    """

    candidate: str = "searched"


def check_candidate_set(candidates: str) -> str:
    """``candidates`` if it is one of :data:`CANDIDATE_SETS`, else a :class:`DyceError`."""
    if candidates not in CANDIDATE_SETS:
        raise DyceError(f"is {candidates!r}; choose one of {', '.join(CANDIDATE_SETS)}",
                        field="candidates")
    return candidates


def raised_thresholds(thresholds: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """float64 ``(F, m)``: ``t + f·(1 − t)`` for every fraction ``f`` (rows) and threshold ``t``.

    Non-decreasing down each column when ``fractions`` ascend (both operations round
    monotonically), which :func:`family_counts` relies on.
    """
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    f = np.asarray(fractions, dtype=np.float64)[:, None]
    return t + f * (1.0 - t)


def reach_counts(confs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """uint8 ``(N,)``: how many of ``thresholds`` (float64 ``(K,)``, ``K ≤ 255``) each confidence
    exceeds (``conf > t``, compared as :func:`dyce.evaluate.exact.exceeds` does).

    With non-decreasing thresholds that is the number of leading candidates under which the
    sample would leave this exit.
    """
    counts = np.zeros(confs.shape[0], dtype=np.uint8)
    for threshold in np.asarray(thresholds, dtype=np.float64).tolist():
        counts += exceeds(confs, threshold)
    return counts


def family_counts(reach: np.ndarray, right: np.ndarray, final_right: np.ndarray,
                  count: int) -> tuple[np.ndarray, np.ndarray]:
    """Exit counts of ``K = count`` threshold vectors on the same ``m`` enabled exits, in one pass.

    Args:
        reach: uint8 ``(m, N)``, :func:`reach_counts` of each enabled exit (position order)
            against its ``K`` thresholds, which are non-decreasing from candidate to candidate.
        right: bool ``(m, N)``, whether each enabled exit is right.
        final_right: bool ``(N,)``, whether the final head is right.
        count: ``K``.

    Returns:
        int64 ``(K, m + 1)`` samples leaving at each enabled exit (last column: the final head)
        and int64 ``(K, m + 1)`` of them right, under each candidate.

    Sample ``n`` passes exit ``j`` under candidate ``i`` unless ``i < reach[j, n]``, so it has
    left by exit ``j`` exactly when ``i < R_j = max(reach[0…j, n])``; the number of samples
    that left by ``j`` is therefore a suffix sum of the histogram of ``R_j``, and the number
    leaving at ``j`` is the difference of consecutive such sums.
    """
    num_exits, num_samples = reach.shape
    running = reach.copy()
    for j in range(1, num_exits):  # a running max, row by row (faster than along axis 0)
        np.maximum(running[j - 1], reach[j], out=running[j])
    exits = np.empty((count, num_exits + 1), dtype=np.int64)
    correct = np.empty((count, num_exits + 1), dtype=np.int64)
    gone = np.zeros(count, dtype=np.int64)  # samples that left before the exit at hand
    for j in range(num_exits):
        by_j, right_by_j = _above(running[j], right[j], count)
        exits[:, j] = by_j - gone
        correct[:, j] = right_by_j
        if j:
            correct[:, j] -= _above(running[j - 1], right[j], count)[1]
        gone = by_j
    exits[:, num_exits] = num_samples - gone
    final_gone = _above(running[-1], final_right, count)[1] if num_exits else 0
    correct[:, num_exits] = int(np.count_nonzero(final_right)) - final_gone
    return exits, correct


def _above(values: np.ndarray, mask: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``(count,)`` twice: for each ``i``, how many ``values`` exceed ``i``, and how many
    of those are ``mask``-ed (``values`` uint8, ``mask`` bool, same shape)."""
    codes = values.astype(np.intp) * 2 + mask
    histogram = np.bincount(codes, minlength=2 * count + 2).reshape(count + 1, 2)
    above = histogram[::-1].cumsum(axis=0)[::-1][1:]
    return above.sum(axis=1), above[:, 1].copy()


def raise_names() -> list[str]:
    """Row names of the ``raise`` family, in :data:`RAISE_FRACTIONS` order."""
    return [f"raise:{f:g}" for f in RAISE_FRACTIONS]


def shared_names() -> list[str]:
    """Row names of the ``shared`` family, in :data:`SHARED_THRESHOLDS` order."""
    return [f"shared:{s:.2f}" for s in SHARED_THRESHOLDS]


def densify(
    records: ExitRecords,
    macs: MacsInfo | dict | str,
    results: Sequence[SearchResult],
    scale,
    *,
    calibration: bool = False,
) -> list[CandidateResult]:
    """Every searched configuration followed by its distinct neighbours, each evaluated exactly.

    Args:
        records: the search records the results were searched on.
        macs: their ``macs_info``.
        results: searched configurations (one per λ, any order).
        scale: the :class:`~dyce.search.CostScale` of the search, for each row's ``cost``.
        calibration: report calibrated accuracies, as the search did.

    Returns:
        Per result, in order: the searched row (its own figures and cost), then its ``raise``
        and ``shared`` neighbours in that order, a neighbour equal to an earlier row of the same
        λ dropped. Results with the same configuration share the work, not their rows.
    """
    neighbours = _Neighbours(records, check_inputs(records, macs), calibration)
    families: dict[tuple, list] = {}
    out: list[CandidateResult] = []
    for result in results:
        key = tuple((int(k), float(t)) for k, t in result.config)
        if key not in families:
            families[key] = neighbours.rows(key)
        out.append(CandidateResult(result.method, result.lambda_, result.config,
                                   result.evaluation, result.cost, "searched"))
        for name, config, evaluation in families[key]:
            out.append(CandidateResult(result.method, result.lambda_, config, evaluation,
                                       evaluation_cost(evaluation, result.lambda_, scale),
                                       name))
    return out


class _Neighbours:
    """Evaluates the neighbours of searched configurations on one record (caches the reach
    counts of every exit against the shared thresholds, and against each raised threshold)."""

    def __init__(self, records: ExitRecords, info: MacsInfo, calibration: bool) -> None:
        self.records = records
        self.info = info
        self.calibration = calibration
        self.confs = records.top1_confs
        self.correct = records.correct
        self.final_correct = int(np.count_nonzero(self.correct[-1]))
        self.shared = np.asarray(SHARED_THRESHOLDS, dtype=np.float64)
        self._reach: dict[tuple, np.ndarray] = {}

    def reach(self, row: int, thresholds: np.ndarray, tag: object) -> np.ndarray:
        key = (row, tag)
        if key not in self._reach:
            self._reach[key] = reach_counts(self.confs[row], thresholds)
        return self._reach[key]

    def rows(self, key: tuple) -> list[tuple[str, list, object]]:
        """(name, configuration, evaluation) of every distinct neighbour of ``key``."""
        positions = [p for p, (k, _t) in enumerate(key) if k >= 0]
        exit_rows = [self.records.exit_index(p, key[p][0]) for p in positions]
        searched = np.asarray([key[p][1] for p in positions], dtype=np.float64)
        raised = raised_thresholds(searched, RAISE_FRACTIONS)  # (F, m)
        shared = np.repeat(self.shared[:, None], len(positions), axis=1)  # (S, m)
        families = [
            (raise_names(), raised,
             [self.reach(r, raised[:, j], ("raise", key[p][1]))
              for j, (r, p) in enumerate(zip(exit_rows, positions, strict=True))]),
            (shared_names(), shared,
             [self.reach(r, self.shared, "shared") for r in exit_rows]),
        ]
        leave_macs = position_macs(self.info, key)
        final_right = self.correct[-1]
        right = self.correct[exit_rows] if exit_rows else np.zeros((0, final_right.shape[0]),
                                                                   dtype=bool)
        seen = {tuple(t for _k, t in key)}
        found = []
        for names, thresholds, reach in families:
            stacked = (np.stack(reach) if reach
                       else np.zeros((0, final_right.shape[0]), dtype=np.uint8))
            exits, hits = family_counts(stacked, right, final_right, len(names))
            for i, name in enumerate(names):
                values = [t for _k, t in key]
                for j, p in enumerate(positions):
                    values[p] = float(thresholds[i, j])
                if tuple(values) in seen:
                    continue
                seen.add(tuple(values))
                found.append((name, [[k, t] for (k, _t), t in zip(key, values, strict=True)],
                              self.evaluation(positions, exits[i], hits[i], leave_macs)))
        return found

    def evaluation(self, positions: list[int], exits: np.ndarray, hits: np.ndarray,
                   leave_macs: np.ndarray):
        num_positions = self.records.num_positions
        exit_counts = np.zeros(num_positions, dtype=np.int64)
        correct_counts = np.zeros(num_positions, dtype=np.int64)
        exit_counts[positions] = exits[:-1]
        correct_counts[positions] = hits[:-1]
        exit_counts[-1], correct_counts[-1] = exits[-1], hits[-1]
        return evaluation_from_counts(exit_counts, correct_counts, leave_macs,
                                      self.info.ori_macs, self.final_correct,
                                      calibration=self.calibration)


def search_candidates(
    records: ExitRecords,
    macs: MacsInfo | dict | str,
    method: str,
    lambdas: Sequence[float],
    *,
    candidates: str = "dense",
    normalize: bool = True,
    calibration: bool = False,
    **options,
) -> list[SearchResult]:
    """:func:`dyce.search.search_configs`, then (``candidates="dense"``, for
    :data:`DENSE_METHODS`) each searched configuration's neighbours (:func:`densify`).

    ``candidates="searched"`` returns exactly what :func:`~dyce.search.search_configs` returns
    (the original DyCE search). ``options`` go to :func:`~dyce.search.search_configs`.
    """
    check_candidate_set(candidates)
    results = search_configs(records, macs, method, lambdas, normalize=normalize,
                             calibration=calibration, **options)
    if candidates == "searched" or method not in DENSE_METHODS:
        return results
    return densify(records, macs, results, cost_scale(records, macs, normalize=normalize),
                   calibration=calibration)
