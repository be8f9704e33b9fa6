"""The calibrated search's curves: every cut of one exit over the arriving samples, with the
calibrated (conservative quantile) accuracy, which is not a sum over samples.

Cut ``j`` lets the ``j`` most confident arriving samples leave. Cuts that would split a run of
equal confidences (or let a confidence of 0 leave) are invalid and never chosen
(:func:`tied_cuts`). For many λ, :meth:`CalibratedCurve.best` finds each λ's first cheapest cut
by divide and conquer when MACs are monotone along the cuts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dyce.search.context import ExitTable, SearchContext, Situation
from dyce.search.cost import CostScale, cost
from dyce.search.cuts import cut_thresholds

#: ``tied_cuts`` scans the arriving confidences instead of locating each tie run when the
#: exit has more than ``count / TIE_SCAN_RATIO`` tied samples (speed only; same cuts).
TIE_SCAN_RATIO = 12


@dataclass
class CalibratedCurve:
    """Every cut of one (position, exit type) in one situation, over the arriving samples only,
    with calibrated accuracies (the calibrated search; the plain one uses
    :class:`~dyce.search.cuts.CurveSet`). λ-independent.

    Cut ``j`` (``0 … count``) lets the ``j`` most confident arriving samples leave.
    ``invalid``: int64 cuts that would split equal confidences (or let a confidence of 0 leave),
    never chosen. Accuracy at ``j`` is ``calibrated_acc[j]``; mean MACs are
    ``(base_macs + moved[j]) / N`` with ``moved`` float64 cumulative MACs change, or
    ``j · step`` when every leaver changes the MACs by the same ``step`` (``moved`` ``None``).
    ``direction``: -1 when MACs strictly fall along the cuts, +1 when they strictly rise, else 0.
    ``conf``/``positions`` locate the arriving samples' confidences (descending).
    """

    invalid: np.ndarray
    count: int
    num_samples: int
    calibrated_acc: np.ndarray
    base_macs: float
    step: float
    moved: np.ndarray | None
    direction: int
    conf: np.ndarray
    positions: np.ndarray | None
    ramp: np.ndarray | None = None  # float64 0, 1, 2, … (shared, at least count + 1 long)
    #: two float64 work buffers for ``_value`` (shared by the curves of a search)
    scratch: tuple[np.ndarray, np.ndarray] | None = None

    def acc(self, cut: np.ndarray) -> np.ndarray:
        """float64 accuracy of the whole configuration at ``cut``."""
        return self.calibrated_acc[cut]

    def macs(self, cut: np.ndarray) -> np.ndarray:
        """float64 mean MACs of the whole configuration at ``cut``."""
        moved = cut * self.step if self.moved is None else self.moved[cut]
        return (self.base_macs + moved) / self.num_samples

    def threshold(self, index: np.ndarray) -> np.ndarray:
        """float64 threshold letting exactly ``index`` samples leave
        (:func:`~dyce.search.cuts.cut_thresholds`)."""
        order = self.positions

        def confidence(i: int) -> float:
            return float(self.conf[i if order is None else order[i]])

        return cut_thresholds(index, self.count, confidence)

    def __post_init__(self) -> None:
        # ``_value`` finds the invalid cuts of a range by binary search: keep them sorted.
        if self.invalid.shape[0] > 1 and not (self.invalid[1:] >= self.invalid[:-1]).all():
            self.invalid = np.sort(self.invalid)

    def _value(self, lam: float, scale: CostScale, low: int, high: int) -> np.ndarray:
        """``constant − cost`` of cuts ``low … high`` for λ (larger is better): ``λ·acc/acc_span
        − b·moved`` with ``b = (1−λ)/(N·macs_span)``; invalid cuts −inf.

        Computed in place in scratch buffers; the result is valid until the next call on any
        curve of the same search."""
        weight_macs = (1.0 - lam) / (self.num_samples * scale.macs_span)
        length = high + 1 - low
        if self.scratch is None or self.scratch[0].shape[0] < length:
            self.scratch = (np.empty(length, dtype=np.float64), np.empty(length, dtype=np.float64))
        value, other = self.scratch[0][:length], self.scratch[1][:length]
        np.multiply(self.calibrated_acc[low:high + 1], lam / scale.acc_span, out=value)
        if self.moved is None:
            ramp = (self.ramp[low:high + 1] if self.ramp is not None
                    else np.arange(low, high + 1, dtype=np.float64))
            np.multiply(ramp, weight_macs * self.step, out=other)
        else:
            np.multiply(self.moved[low:high + 1], weight_macs, out=other)
        np.subtract(value, other, out=value)
        first, last = np.searchsorted(self.invalid, (low, high + 1), side="left")
        value[self.invalid[first:last] - low] = -np.inf
        return value

    def best(self, lambdas: np.ndarray, scale: CostScale) -> tuple[np.ndarray, np.ndarray]:
        """Per λ: the cheapest cut (the first, i.e. highest threshold, on ties) and its cost.

        When MACs are monotone along the cuts, the first cheapest cut moves monotonically with λ
        (towards fewer exits as λ grows), so λs are solved by divide and conquer, each on the
        range its neighbours leave open: ``O(n log L)`` instead of ``O(n L)``. The cost of each
        winner is :func:`cost` of its accuracy and MACs.
        """
        count = lambdas.shape[0]
        best = np.zeros(count, dtype=np.int64)
        order = np.argsort(lambdas, kind="stable")
        last = self.count
        stack = [(0, count - 1, 0, last)]
        while stack:
            left, right, low, high = stack.pop()
            if left > right:
                continue
            middle = (left + right) // 2
            which = order[middle]
            if self.direction == 0:
                low, high = 0, last
            winner = low + int(np.argmax(self._value(float(lambdas[which]), scale, low, high)))
            best[which] = winner
            if self.direction < 0:  # larger λ, fewer exits
                stack.append((left, middle - 1, winner, high))
                stack.append((middle + 1, right, low, winner))
            else:
                stack.append((left, middle - 1, low, winner))
                stack.append((middle + 1, right, winner, high))
        return best, cost(self.acc(best), self.macs(best), lambdas, scale)


def tied_cuts(table: ExitTable, positions: np.ndarray | None,
              arriving_sorted: np.ndarray | None, count: int) -> np.ndarray:
    """int64 cuts that split a run of equal confidences among the arriving samples.

    ``positions``: sorted indices (into the exit's order) of the arriving samples and
    ``arriving_sorted`` bool arrival in that order (both ``None`` when all arrive). A run with
    ``m ≥ 2`` arriving members, the first at compressed index ``lo``, forbids cuts
    ``lo+1 … lo+m-1``.
    """
    if table.tie_start.shape[0] == 0 or count == 0:
        return np.zeros(0, dtype=np.int64)
    if positions is None:
        low = table.tie_start
        members = np.diff(np.append(table.tie_offset, table.tie_members.shape[0]))
    elif TIE_SCAN_RATIO * table.tie_members.shape[0] > count:
        # Many tied samples: scanning the arriving confidences for equal neighbours is cheaper
        # than locating each run among them (the same cuts, ascending).
        conf = np.take(table.conf, positions)
        return np.flatnonzero(conf[1:] == conf[:-1]) + 1
    else:
        present = np.take(arriving_sorted.view(np.int8), table.tie_members)
        members = np.add.reduceat(present, table.tie_offset, dtype=np.int64)
        several = members >= 2
        members = members[several]
        low = np.searchsorted(positions, table.tie_start[several], side="left")
    lengths = np.maximum(members - 1, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.repeat(low + 1 - np.cumsum(lengths) + lengths, lengths)
    return first + np.arange(total)


def calibrated_curve(context: SearchContext, situation: Situation,
                     exit_type: int) -> CalibratedCurve:
    """Every valid cut of ``exit_type`` at the situation's position, over the arriving
    samples only, with calibrated accuracies (the calibrated search).

    Cut ``j`` lets the ``j`` most confident arriving samples leave; it is valid when it does
    not split equal confidences (and, for ``j = n``, when the last one is above 0).
    """
    p = situation.position
    table = context.exit_table(context.records.exit_index(p, exit_type))
    general = situation.rest_code is not None
    if general:
        codes = np.take(situation.rest_code, table.order)  # arrival and rest fate
        arriving_sorted = codes >= 0
        positions = np.flatnonzero(arriving_sorted)
        codes = np.take(codes, positions)
    elif situation.arrive is None:
        positions = arriving_sorted = None
    else:
        arriving_sorted = np.take(situation.arrive, table.order)
        positions = np.flatnonzero(arriving_sorted)
    count = context.num_samples if positions is None else positions.shape[0]

    def arriving(values: np.ndarray) -> np.ndarray:
        return values if positions is None else np.take(values, positions)

    invalid = tied_cuts(table, positions, arriving_sorted, count)
    if count and table.conf[count - 1 if positions is None else positions[-1]] == 0:
        invalid = np.append(invalid, count)  # a confidence of 0 never leaves

    weights, base_macs = context.leaver_macs(situation, [exit_type])
    weights, base_macs = weights[0], float(base_macs[0])
    if general:
        # MACs change per leaver, by rest position, looked up by rest code.
        steps = np.take(np.repeat(weights, 2), codes)
        moved = np.empty(count + 1, dtype=np.float64)
        moved[0] = 0.0
        np.cumsum(steps, out=moved[1:])
        present = weights[situation.rest_counts > 0]  # the rest positions that occur
        direction = -1 if (present < 0).all() else (1 if (present > 0).all() else 0)
        step = 0.0
        rest_right, rest_position = (codes & 1).astype(bool), codes >> 1
    else:
        step = float(weights[-1])
        moved = None
        direction = -1 if step < 0 else (1 if step > 0 else 0)
        # every rest fate is the final head: its correctness is right − gain
        rest_right = (arriving(table.right).astype(np.int8) - arriving(table.gain)) > 0
        rest_position = None
    calibrated_acc = np.asarray(calibrated_cut_accuracy(context,
        situation, np.arange(count + 1), arriving(table.right), rest_right, rest_position),
        dtype=np.float64)
    return CalibratedCurve(invalid, count, context.num_samples, calibrated_acc, base_macs, step,
                           moved, direction, table.conf, positions, context.ramp(),
                           context.scratch())


def calibrated_cut_accuracy(context: SearchContext, situation: Situation, cuts: np.ndarray,
                            leave_right: np.ndarray, rest_right: np.ndarray | None,
                            rest_position: np.ndarray | None) -> np.ndarray:
    """float64 calibrated accuracy of the whole configuration at each cut."""
    p = situation.position
    count = leave_right.shape[0]
    terms = [(c, r, None) for c, r in zip(situation.fixed_counts, situation.fixed_correct,
                                           strict=True)]
    cum = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(leave_right, out=cum[1:])
    terms[p] = (cuts, cum[cuts], None)
    for q in range(p + 1, context.num_positions):
        if situation.rest_counts[q] == 0:
            continue
        # rest_position None: every arriving sample's rest fate is the final head
        here = np.ones(count, dtype=bool) if rest_position is None else rest_position == q
        moved = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(here, out=moved[1:])
        # Position q's counts change only when a leaver's rest fate is q: one grid entry per
        # number m of such leavers (m right among them: cumulative over those leavers).
        moved_right = np.zeros(int(moved[-1]) + 1, dtype=np.int64)
        np.cumsum(rest_right[here], out=moved_right[1:])
        grid = np.arange(moved_right.shape[0])
        terms[q] = (situation.rest_counts[q] - grid,
                    situation.rest_correct_counts[q] - moved_right, moved[cuts])
    return np.broadcast_to(np.asarray(context.calibrated_sum(terms), dtype=np.float64),
                           cuts.shape)
