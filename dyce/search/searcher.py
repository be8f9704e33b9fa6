"""DyCE configuration search: ``onepass``, ``circular`` and the ``samethres`` baseline.

For a trade-off weight λ the search minimises (see :func:`cost`)::

    cost = λ·(1 − acc) + (1 − λ)·macs

over configurations (``P-1`` pairs ``[exit_type, threshold]``). Thresholds are exact optima: for
position ``p`` and exit type ``k`` every cut of the arriving samples in descending order of
confidence is considered (the samples that do not leave keep their fate under the rest of the
configuration and pay head ``k``), with the block-pruned scan of :mod:`dyce.search.cuts`. The minimal
cost wins; ties go to the highest threshold (fewest exits). The reported threshold is the
midpoint between the two confidence values around the cut (``0.0`` when every arriving sample
leaves, ``1.0`` when none does), so :func:`dyce.evaluate.exact.evaluate_config` of the returned
configuration reproduces the searched partition exactly.

Work is shared across λ: a cut's accuracy and MACs do not depend on λ, so ``onepass`` walks a
tree of λ groups with identical decision prefixes (all exit types of a step in one
:class:`~dyce.search.cuts.CurveSet`), and ``circular`` (:mod:`dyce.search.circular`) lets the λs that take the
same change share the next configuration, derived incrementally from its parent. The calibrated
search, whose accuracy is not a sum over samples, scans the arriving samples' cuts directly
(``_Curve``) and runs ``circular`` round by round.

Exact semantics and every tie rule: ``docs/semantics.md``.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dyce.errors import DyceError
from dyce.evaluate.exact import (
    CALIBRATION_QUANTILE,
    Evaluation,
    check_config,
    check_inputs,
    evaluate_config,
    evaluation_from_counts,
    exceeds,
    position_macs,
)
from dyce.macs.info import MacsInfo
from dyce.records.format import ExitRecords
from dyce.search.cuts import (
    BlockCurve,
    BlockSums,
    CurveSet,
    ExitOrder,
    ExitStack,
    block_sums,
    cut_thresholds,
    exit_order,
    sample_blocks,
    stack_exits,
)

METHODS = ("onepass", "circular", "samethres")

#: Records with at least this many samples are searched with one thread per CPU by default
#: (1.28M samples: onepass 42 → 34 s wall on 2 cores; 100k: no gain).
PARALLEL_MIN_SAMPLES = 200_000

#: ``circular`` applies a change only when it lowers the cost by more than this (absolute;
#: costs are O(1)), so floating-point noise between equal-cost configurations cannot cycle.
IMPROVEMENT_TOLERANCE = 1e-13

#: ``_tied_cuts`` scans the arriving confidences instead of locating each tie run when the
#: exit has more than ``count / TIE_SCAN_RATIO`` tied samples (speed only; same cuts).
TIE_SCAN_RATIO = 12



# --------------------------------------------------------------------------- cost


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


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SearchResult:
    """One searched configuration.

    Attributes:
        method: ``"onepass"``, ``"circular"`` or ``"samethres"``.
        lambda_: the trade-off weight λ.
        config: ``P-1`` pairs ``[exit_type, threshold]`` (``exit_type`` int, ``-1`` = no exit).
        evaluation: exact figures of ``config`` on the search records (calibrated accuracy when
            the search was calibrated).
        cost: the cost the search minimised, as the search computed it (equal to
            :func:`evaluation_cost` of ``evaluation`` up to floating-point rounding).
    """

    method: str
    lambda_: float
    config: list
    evaluation: Evaluation
    cost: float


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
    searcher = _Searcher(records, info, normalize=normalize, calibration=calibration,
                         progress=progress, threads=threads)
    try:
        if method == "onepass":
            return searcher.onepass(values)
        return searcher.circular(values, max_rounds=max_rounds)
    finally:
        searcher.close()


def available_cpus() -> int:
    """CPUs this process may use: ``OMP_NUM_THREADS`` when set (Snakemake and most schedulers
    export a job's thread count there), else its affinity mask where the OS has one."""
    declared = os.environ.get("OMP_NUM_THREADS", "").strip()
    if declared.isdigit() and int(declared) > 0:
        return int(declared)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


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


# --------------------------------------------------------------------------- curves


@dataclass
class _Situation:
    """What position ``p`` sees when every other position is fixed (λ-independent).

    ``arrive``: bool ``(N,)`` samples reaching ``p`` (``None``: all). ``rest_code``: ``None`` when
    every arriving sample would reach the final head with ``p`` disabled, else int ``(N,)``
    ``2·position + right`` of the exit it would leave at instead (``-1``: does not arrive).
    ``rest_table``: float64 ``(P,)`` MACs of leaving at each position with ``p`` disabled.
    ``passed``: MACs of the enabled heads before ``p``. ``fixed_*``: samples that left before
    ``p`` (per-position counts and their total MACs). ``rest_counts``/``rest_correct_counts``:
    arriving samples per rest position, and how many of them are right.
    """

    position: int
    arrive: np.ndarray | None
    rest_code: np.ndarray | None
    rest_table: np.ndarray
    passed: float
    fixed_counts: np.ndarray
    fixed_correct: np.ndarray
    fixed_macs: float
    rest_counts: np.ndarray
    rest_correct_counts: np.ndarray


@dataclass
class _ExitTable:
    """One exit's samples in descending order of confidence.

    ``order``: intp sample indices (the searcher's labels); ``conf``: float32 confidences;
    ``right``: bool whether the exit is right; ``gain``: int8 ``right − final head right``;
    ``tie_start``: int64 first
    sorted index of every run of equal confidences (runs of 2 or more); ``tie_members``: int64
    sorted indices of all their members, run after run; ``tie_offset``: int64 where each run
    starts in ``tie_members``.
    """

    order: np.ndarray
    conf: np.ndarray
    right: np.ndarray
    gain: np.ndarray
    tie_start: np.ndarray
    tie_members: np.ndarray
    tie_offset: np.ndarray


@dataclass
class _Curve:
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


def _tied_cuts(table: _ExitTable, positions: np.ndarray | None,
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


class _Searcher:
    """Shared state of one search: sorted exits, MACs tables and the cost scale."""

    #: ``circular`` without calibration runs on incrementally updated block curves; ``False``
    #: runs it round by round over full situations (the reference the tests compare with).
    incremental_circular = True

    def __init__(self, records: ExitRecords, info: MacsInfo, *, normalize: bool,
                 calibration: bool, progress: bool, threads: int | None = None) -> None:
        self.records = records
        self.info = info
        self.calibration = calibration
        self.progress = progress
        self.scale = cost_scale(records, info, normalize=normalize)
        self.num_samples = records.num_samples
        self.num_positions = records.num_positions
        self.num_types = records.num_exit_types
        confs = records.top1_confs
        low, high = float(confs.min()), float(confs.max())
        if not (0.0 <= low and high <= 1.0):  # also catches NaN
            raise DyceError("top-1 confidences must be probabilities in [0, 1]",
                            path=records.source, field="confs")
        # The search works on samples relabelled in descending order of their summed
        # confidence: exits agree on which samples are easy, so each exit's sorted order then
        # visits nearby labels and the per-curve gathers in that order stay in cache. Counts do
        # not depend on labels; sorted orders are computed on the original labels (same ties).
        correct = records.correct
        self._original = (confs, correct)
        labels = np.argsort(confs.sum(axis=0, dtype=np.float64), kind="stable")[::-1]
        self._relabel = np.empty(self.num_samples, dtype=np.intp)
        self._relabel[labels] = np.arange(self.num_samples, dtype=np.intp)
        self.confs = np.take(confs, labels, axis=1)
        self.correct = np.take(correct, labels, axis=1)
        self.final_correct = self.correct[-1]
        self.final_correct_count = int(np.count_nonzero(self.final_correct))
        self.backbone = info.backbone_macs
        self.head = info.head_macs
        self._sorted: dict[int, _ExitTable] = {}
        self._orders: dict[int, ExitOrder] = {}
        self._sample_blocks: dict[int, np.ndarray] = {}
        self._stacks: dict[int, ExitStack] = {}
        self._ramp: np.ndarray | None = None
        self._local = threading.local()  # per-thread scratch buffers of the curves
        if threads is None:
            workers = available_cpus() if self.num_samples >= PARALLEL_MIN_SAMPLES else 1
        else:
            workers = int(threads)
        if workers < 1:
            raise DyceError(f"must be at least 1, got {threads!r}", field="threads")
        workers = min(workers, self.num_types)
        #: dtype of rest codes ``2·position + right`` (-1: not arriving)
        self.code_type = np.int8 if 2 * self.num_positions < 127 else np.int32
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def map(self, work: Callable[[int], object], items) -> list:
        """``[work(i) for i in items]``, in the worker threads when there are any."""
        if self._pool is None:
            return [work(item) for item in items]
        return list(self._pool.map(work, items))

    # ------------------------------------------------------------------ helpers

    def exit_table(self, row: int) -> _ExitTable:
        """The exit's samples sorted by descending confidence (computed once per exit)."""
        table = self._sorted.get(row)
        if table is None:
            confs, correct = self._original
            conf = confs[row]
            original = np.argsort(conf)[::-1]
            order = np.take(self._relabel, original)  # intp: np.take needs no index copy
            conf_sorted = np.take(conf, original)
            right = np.take(correct[row], original)
            gain = right.astype(np.int8) - np.take(correct[-1], original)
            del original
            tied = np.zeros(conf.shape[0] + 1, dtype=np.int8)
            tied[1:-1] = conf_sorted[:-1] == conf_sorted[1:]  # tied[i]: i-1 and i are equal
            edges = np.diff(tied)
            tie_start = np.flatnonzero(edges == 1)
            tie_end = np.flatnonzero(edges == -1)
            lengths = tie_end - tie_start + 1
            offset = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            members = np.repeat(tie_start - offset, lengths) + np.arange(int(lengths.sum()))
            table = _ExitTable(order, conf_sorted, right, gain, tie_start, members, offset)
            self._sorted[row] = table
        return table

    def exit_order(self, row: int) -> ExitOrder:
        """The exit's samples sorted by descending confidence, in blocks (once per exit)."""
        order = self._orders.get(row)
        if order is None:
            confs, correct = self._original
            original = np.argsort(confs[row])[::-1]
            order = exit_order(np.take(self._relabel, original), np.take(confs[row], original),
                               np.take(correct[row], original), np.take(correct[-1], original))
            self._orders[row] = order
        return order

    def sample_blocks(self, p: int) -> np.ndarray:
        """int32 ``(N, T)``: each sample's block and correctness in the sorted order of every
        exit type at position ``p`` (:func:`dyce.search.cuts.sample_blocks`; once per position)."""
        table = self._sample_blocks.get(p)
        if table is None:
            rows = [self.records.exit_index(p, k) for k in range(self.num_types)]
            table = sample_blocks(self.exit_stack(p), self.correct[rows])
            self._sample_blocks[p] = table
        return table

    def exit_stack(self, p: int) -> ExitStack:
        """Every exit type's sorted order at position ``p``, stacked (once per position)."""
        stack = self._stacks.get(p)
        if stack is None:
            stack = stack_exits([self.exit_order(self.records.exit_index(p, k))
                                 for k in range(self.num_types)])
            self._stacks[p] = stack
        return stack

    def calibrated(self, counts: list, corrects: list) -> np.ndarray | float:
        """Calibrated accuracy from per-position counts (scalars or arrays over cuts)."""
        return self._calibrated_sum([(count, correct, None)
                                     for count, correct in zip(counts, corrects, strict=True)])

    def _calibrated_sum(self, terms: list) -> np.ndarray | float:
        """Σ over positions of the calibrated right count share. ``terms``: per position
        ``(count, correct, index)``; with ``index`` the counts are a grid of distinct values and
        the position's share at each cut is the grid's entry ``index`` (fewer quantiles to
        compute, the same floats)."""
        from scipy.special import betaincinv

        total = 0.0
        for count, correct, index in terms:
            count = np.asarray(count)
            if not count.any():
                continue
            bound = betaincinv(1 + np.asarray(correct), 1 + count - correct, CALIBRATION_QUANTILE)
            share = np.where(count > 0, bound * (count / self.num_samples), 0.0)
            total = total + (share if index is None else share[index])
        return total

    def none_option(self, situation: _Situation) -> tuple[float, float]:
        """(accuracy, mean MACs) when position ``p`` has no exit."""
        counts = situation.fixed_counts + situation.rest_counts
        corrects = situation.fixed_correct + situation.rest_correct_counts
        total_macs = situation.fixed_macs + float(situation.rest_counts @ situation.rest_table)
        if self.calibration:
            acc = float(self.calibrated(list(counts), list(corrects)))
        else:
            acc = int(corrects.sum()) / self.num_samples
        return acc, total_macs / self.num_samples

    def best_cuts(self, curve: _Curve | BlockCurve,
                  lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per λ: the cheapest cut of ``curve`` (arriving leavers) and its cost."""
        if isinstance(curve, _Curve):
            return curve.best(lambdas, self.scale)
        cut, acc, macs = curve.best(lambdas, self.scale.acc_span, self.scale.macs_span)
        return cut, cost(acc, macs, lambdas, self.scale)

    def curve(self, situation: _Situation, exit_type: int) -> _Curve | BlockCurve:
        """Every cut of ``exit_type`` at the situation's position (:class:`BlockCurve`; the
        calibrated search, whose accuracy is not a sum over samples, uses :class:`_Curve`)."""
        if not self.calibration:
            return self.block_curve(situation, exit_type)
        return self.compact_curve(situation, exit_type)

    def block_curve(self, situation: _Situation, exit_type: int) -> BlockCurve:
        """The cuts of ``exit_type`` at the situation's position over the exit's whole sorted
        order (samples not arriving count as nothing)."""
        return BlockCurve(self.curve_set(situation, [exit_type]))

    def sorted_codes(self, stack: ExitStack, arrive: np.ndarray | None = None,
                     rest_code: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Rest codes ``(T', nb·B)`` of the exits of ``stack`` in their sorted orders (-1: not
        arriving, and padding): from ``rest_code`` (by sample), else every sample in ``arrive``
        (``None``: all) would reach the final head, whose gains (int8) come with them."""
        count = self.num_samples
        types = len(stack.orders)
        if rest_code is not None:
            codes = np.full((types, stack.padded), -1, dtype=self.code_type)
            for row, exit in zip(codes, stack.orders, strict=True):
                np.take(rest_code, exit.order, out=row[:count])
            return codes, None
        rights, finals = stack.right.reshape(types, -1), stack.final_right.reshape(types, -1)
        codes = finals.astype(self.code_type)
        codes += self.code_type(2 * (self.num_positions - 1))
        gain = rights - finals
        if arrive is None:
            codes[:, count:] = -1
        else:
            arriving = np.zeros(rights.shape, dtype=np.int8)
            for row, exit in zip(arriving, stack.orders, strict=True):
                np.take(arrive.view(np.int8), exit.order, out=row[:count])
            codes += 1
            codes *= arriving
            codes -= 1
            gain *= arriving
        return codes, gain

    def leaver_macs(self, situation: _Situation,
                    types: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """float64 ``(T', P)`` MACs change of a leaver of each of ``types`` at the situation's
        position by rest position, and ``(T',)`` the total MACs when none leaves there (every
        arriving sample pays the head)."""
        p = situation.position
        head = self.head[types, p].astype(np.float64)
        leave_cost = float(self.backbone[p]) + (situation.passed + head)
        count = int(situation.rest_counts.sum())
        base_macs = situation.fixed_macs + float(situation.rest_counts @ situation.rest_table) \
            + count * head
        return (leave_cost - head)[:, None] - situation.rest_table[None, :], base_macs

    @staticmethod
    def base_correct(situation: _Situation) -> int:
        """Right samples when none leaves at the situation's position."""
        return int(situation.fixed_correct.sum()) + int(situation.rest_correct_counts.sum())

    def curve_set(self, situation: _Situation, types: list[int] | None = None,
                  by_sample: np.ndarray | None = None, sums: BlockSums | None = None) -> CurveSet:
        """:class:`CurveSet` of exit types ``types`` (``None``: all) at the situation's
        position; from the rest codes by sample (int ``(N,)``) and the sums when the caller has
        them."""
        p = situation.position
        if types is None:
            types, stack = list(range(self.num_types)), self.exit_stack(p)
        else:
            stack = stack_exits([self.exit_order(self.records.exit_index(p, k)) for k in types])
        positions = occurring_positions(situation.rest_counts)
        codes = None
        if by_sample is None:
            codes, gain = self.sorted_codes(stack, situation.arrive, situation.rest_code)
            sums = block_sums(stack.right.reshape(len(types), -1), stack.block, codes, positions,
                              self.num_positions, gain)
        weights, base_macs = self.leaver_macs(situation, types)
        return CurveSet(stack, codes, sums, weights, int(situation.rest_counts.sum()),
                        self.base_correct(situation), base_macs, positions, by_sample)

    def compact_curve(self, situation: _Situation, exit_type: int) -> _Curve:
        """Every valid cut of ``exit_type`` at the situation's position, over the arriving
        samples only, with calibrated accuracies (the calibrated search).

        Cut ``j`` lets the ``j`` most confident arriving samples leave; it is valid when it does
        not split equal confidences (and, for ``j = n``, when the last one is above 0).
        """
        p = situation.position
        table = self.exit_table(self.records.exit_index(p, exit_type))
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
        count = self.num_samples if positions is None else positions.shape[0]

        def arriving(values: np.ndarray) -> np.ndarray:
            return values if positions is None else np.take(values, positions)

        invalid = _tied_cuts(table, positions, arriving_sorted, count)
        if count and table.conf[count - 1 if positions is None else positions[-1]] == 0:
            invalid = np.append(invalid, count)  # a confidence of 0 never leaves

        weights, base_macs = self.leaver_macs(situation, [exit_type])
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
        calibrated_acc = np.asarray(self._calibrated_cuts(
            situation, np.arange(count + 1), arriving(table.right), rest_right, rest_position),
            dtype=np.float64)
        if self._ramp is None:
            self._ramp = np.arange(self.num_samples + 1, dtype=np.float64)
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:  # one pair per thread: a curve's best() runs in its own thread
            scratch = (np.empty(self.num_samples + 1, dtype=np.float64),
                       np.empty(self.num_samples + 1, dtype=np.float64))
            self._local.scratch = scratch
        return _Curve(invalid, count, self.num_samples, calibrated_acc, base_macs, step, moved,
                      direction, table.conf, positions, self._ramp, scratch)

    def _calibrated_cuts(self, situation: _Situation, cuts: np.ndarray, leave_right: np.ndarray,
                         rest_right: np.ndarray | None,
                         rest_position: np.ndarray | None) -> np.ndarray:
        """float64 calibrated accuracy of the whole configuration at each cut."""
        p = situation.position
        count = leave_right.shape[0]
        terms = [(c, r, None) for c, r in zip(situation.fixed_counts, situation.fixed_correct,
                                               strict=True)]
        cum = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(leave_right, out=cum[1:])
        terms[p] = (cuts, cum[cuts], None)
        for q in range(p + 1, self.num_positions):
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
        return np.broadcast_to(np.asarray(self._calibrated_sum(terms), dtype=np.float64),
                               cuts.shape)

    def result(self, method: str, lambda_: float, config: list, exit_counts, correct_counts,
               search_cost: float | None) -> SearchResult:
        pairs = [(int(k), float(t)) for k, t in config]
        evaluation = evaluation_from_counts(
            exit_counts, correct_counts, position_macs(self.info, pairs), self.info.ori_macs,
            self.final_correct_count, calibration=self.calibration,
        )
        if search_cost is None:
            search_cost = evaluation_cost(evaluation, lambda_, self.scale)
        return SearchResult(method, lambda_, [[int(k), float(t)] for k, t in config], evaluation,
                            float(search_cost))

    def _progress(self, total: int, desc: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, disable=not self.progress, leave=False)

    # ------------------------------------------------------------------ onepass

    def onepass(self, lambdas: list[float]) -> list[SearchResult]:
        """Onepass for every λ, sharing each decision prefix between the λs that took it."""
        lams = np.asarray(lambdas, dtype=np.float64)
        results: list[SearchResult | None] = [None] * len(lambdas)
        num_positions = self.num_positions
        start = _OnepassNode(
            arrive=None, passed=0.0, config=[],
            exit_counts=np.zeros(num_positions, dtype=np.int64),
            correct_counts=np.zeros(num_positions, dtype=np.int64), left_macs=0.0,
            search_cost=None,
        )
        with self._progress(len(lambdas), "onepass") as bar:
            stack = [(start, np.arange(len(lambdas)))]
            while stack:
                node, ids = stack.pop()
                position = len(node.config)
                if position == num_positions - 1:
                    self._finish_onepass(node, ids, lams, results)
                    bar.update(ids.shape[0])
                    continue
                stack.extend(reversed(self._onepass_step(node, ids, lams)))
        return results  # type: ignore[return-value]

    def _onepass_situation(self, node: _OnepassNode) -> _Situation:
        p = len(node.config)
        arriving = self.num_samples if node.arrive is None else int(np.count_nonzero(node.arrive))
        right = (self.final_correct_count if node.arrive is None
                 else int(np.count_nonzero(self.final_correct & node.arrive)))
        rest_counts = np.zeros(self.num_positions, dtype=np.int64)
        rest_correct = np.zeros(self.num_positions, dtype=np.int64)
        rest_counts[-1], rest_correct[-1] = arriving, right
        table = np.zeros(self.num_positions, dtype=np.float64)
        table[-1] = float(self.info.ori_macs) + node.passed
        return _Situation(p, node.arrive, None, table, node.passed, node.exit_counts,
                          node.correct_counts, node.left_macs, rest_counts, rest_correct)

    def _onepass_step(self, node: _OnepassNode, ids: np.ndarray,
                      lams: np.ndarray) -> list[tuple[_OnepassNode, np.ndarray]]:
        situation = self._onepass_situation(node)
        p = situation.position
        lam = lams[ids]
        best_cost = np.full(ids.shape[0], np.inf)
        choice = np.full(ids.shape[0], -1)
        cut_index = np.zeros(ids.shape[0], dtype=np.int64)
        none_acc, none_macs = self.none_option(situation)
        none_cost = cost(none_acc, none_macs, lam, self.scale)
        thresholds = self.onepass_options(situation, lam)
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
                child = _OnepassNode(node.arrive, node.passed, node.config + [(-1, 1.0)],
                                     node.exit_counts, node.correct_counts, node.left_macs,
                                     member_cost)
            else:
                threshold = thresholds.threshold(exit_type, index)
                row = self.records.exit_index(p, exit_type)
                leaving = exceeds(self.confs[row], threshold)
                if node.arrive is not None:
                    leaving &= node.arrive
                exits = int(np.count_nonzero(leaving))
                if exits != int(index):  # the threshold must reproduce the cut
                    raise AssertionError(f"threshold {threshold!r} lets {exits} samples leave "
                                         f"at position {p}, not {int(index)}")
                head = float(self.head[exit_type, p])
                exit_counts = node.exit_counts.copy()
                correct_counts = node.correct_counts.copy()
                exit_counts[p] = exits
                correct_counts[p] = np.count_nonzero(leaving & self.correct[row])
                leave_cost = float(self.backbone[p]) + (node.passed + head)
                arrive = ~leaving if node.arrive is None else node.arrive & ~leaving
                child = _OnepassNode(arrive, node.passed + head,
                                     node.config + [(exit_type, threshold)],
                                     exit_counts, correct_counts,
                                     node.left_macs + exits * leave_cost, member_cost)
            children.append((child, ids[members]))
        return children

    def onepass_options(self, situation: _Situation, lam: np.ndarray) -> _Options:
        """Every exit type's cheapest cut and cost per λ at a onepass situation: all types in
        one :class:`CurveSet` in one thread, else one curve per type (in worker threads, or
        calibrated)."""
        if self._pool is None and not self.calibration:
            curves = self.curve_set(situation)
            cut, acc, macs = curves.best(lam, self.scale.acc_span, self.scale.macs_span)
            costs = cost(acc, macs, lam[None, :], self.scale)
            return _Options(list(zip(cut, costs, strict=True)),
                            lambda k, j: float(curves.threshold(k, np.asarray([j]))[0]))

        def curve_and_best(exit_type: int) -> tuple[_Curve | BlockCurve, np.ndarray, np.ndarray]:
            curve = self.curve(situation, exit_type)
            return (curve, *self.best_cuts(curve, lam))

        found = self.map(curve_and_best, range(self.num_types))
        return _Options([(best, costs) for _, best, costs in found],
                        lambda k, j: float(found[k][0].threshold(np.asarray([j]))[0]))

    def _finish_onepass(self, node: _OnepassNode, ids: np.ndarray, lams: np.ndarray,
                        results: list) -> None:
        situation = self._onepass_situation(node)
        exit_counts = node.exit_counts + situation.rest_counts
        correct_counts = node.correct_counts + situation.rest_correct_counts
        for i, member in enumerate(ids.tolist()):
            search_cost = None if node.search_cost is None else float(node.search_cost[i])
            results[member] = self.result("onepass", float(lams[member]), node.config,
                                          exit_counts, correct_counts, search_cost)

    # ------------------------------------------------------------------ circular

    def circular(self, lambdas: list[float], *, max_rounds: int = 1000) -> list[SearchResult]:
        """Circular search for every λ: on block curves updated incrementally
        (:mod:`dyce.search.circular`), or round by round over full situations when calibrated."""
        if not self.calibration and self.incremental_circular:
            from dyce.search.circular import circular

            return circular(self, lambdas, max_rounds=max_rounds,
                            tolerance=IMPROVEMENT_TOLERANCE)
        return self.circular_by_rounds(lambdas, max_rounds=max_rounds)

    def circular_by_rounds(self, lambdas: list[float], *,
                           max_rounds: int = 1000) -> list[SearchResult]:
        """Circular search for every λ, round by round; λs whose configurations coincide share
        the work."""
        lams = np.asarray(lambdas, dtype=np.float64)
        results: list[SearchResult | None] = [None] * len(lambdas)
        start = tuple((-1, 1.0) for _ in range(self.num_positions - 1))
        active: dict[tuple, list[int]] = {start: list(range(len(lambdas)))}
        previous_cache: dict = {}
        rounds = 0
        stopped = False
        with self._progress(len(lambdas), "circular") as bar:
            while active:
                cache: dict = {}
                next_active: dict[tuple, list[int]] = {}
                for config, members in active.items():
                    ids = np.asarray(members)
                    node = _CircularNode(self, config)
                    current = cost(node.acc, node.macs, lams[ids], self.scale)
                    best_cost, change = self._best_change(node, lams[ids], cache, previous_cache)
                    improve = best_cost < current - IMPROVEMENT_TOLERANCE
                    stopped = stopped or bool(improve.any() and rounds >= max_rounds)
                    for i, member in enumerate(members):
                        if improve[i] and rounds < max_rounds:
                            position, exit_type, threshold = change[i]
                            updated = list(config)
                            updated[position] = (exit_type, threshold)
                            next_active.setdefault(tuple(updated), []).append(member)
                        else:
                            results[member] = self.result("circular", float(lams[member]),
                                                          list(config), node.exit_counts,
                                                          node.correct_counts, None)
                            bar.update(1)
                active, previous_cache = next_active, cache
                rounds += 1
        if stopped:  # a λ could still improve when the cap stopped it
            warnings.warn(f"circular search stopped after max_rounds={max_rounds}", stacklevel=3)
        return results  # type: ignore[return-value]

    def _best_change(self, node: _CircularNode, lam: np.ndarray, cache: dict,
                     previous_cache: dict) -> tuple[np.ndarray, list]:
        """Per λ: the cheapest single change (first in position, type, none order on ties).

        The best option at ``p`` depends only on the configuration elsewhere, so it is cached
        per (``p``, configuration elsewhere, λ) for this round and the next (where the λs that
        just changed ``p`` look it up again).
        """
        best_cost = np.full(lam.shape[0], np.inf)
        change: list = [None] * lam.shape[0]
        for p in range(self.num_positions - 1):
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
                    curve = self.curve(situation, exit_type)
                    best, costs = self.best_cuts(curve, todo)
                    return costs, curve.threshold(best)

                options = self.map(option, range(self.num_types))
                none_acc, none_macs = self.none_option(situation)
                none_costs = cost(none_acc, none_macs, todo, self.scale)
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


def occurring_positions(rest_counts: np.ndarray) -> tuple[int, ...]:
    """The rest positions with arriving samples (``rest_counts`` int ``(P,)``), ascending; the
    final head when there are none."""
    return tuple(int(q) for q in np.flatnonzero(rest_counts > 0)) or (rest_counts.shape[0] - 1,)


def rest_codes(leave: list[np.ndarray | None], right: list[np.ndarray | None],
               final_right: np.ndarray, code_type: type) -> np.ndarray:
    """int ``(P-1, n)``: for each position ``p``, where each of ``n`` samples would leave with
    ``p`` disabled, as ``2·position + right`` (the final head when no enabled exit takes it), -1
    for the samples that do not arrive at ``p``. ``leave[q]``/``right[q]``: bool ``(n,)`` whether
    position ``q``'s exit would let each sample leave / is right (``None``: no exit)."""
    count = len(leave)
    after = (2 * count + final_right).astype(code_type)  # the first exit after p that takes it
    codes = np.empty((count, final_right.shape[0]), dtype=code_type)
    for p in range(count - 1, -1, -1):
        codes[p] = after
        if leave[p] is not None:
            after = np.where(leave[p], (2 * p + right[p]).astype(code_type), after)
    arrive = np.ones(final_right.shape[0], dtype=bool)
    for p in range(count):
        codes[p] = np.where(arrive, codes[p], code_type(-1))
        if leave[p] is not None:
            arrive &= ~leave[p]
    return codes


@dataclass
class _Options:
    """The exit types' options at one onepass step: per type (cheapest cut per λ, its cost
    per λ), and ``threshold(exit_type, cut)``."""

    options: list[tuple[np.ndarray, np.ndarray]]
    threshold: Callable[[int, int], float]


@dataclass
class _OnepassNode:
    """A decision prefix of onepass: positions ``0 … len(config)-1`` decided, later ones empty."""

    arrive: np.ndarray | None  # bool (N,) samples not yet left (None: all)
    passed: float  # MACs of the enabled heads so far
    config: list
    exit_counts: np.ndarray  # int64 (P,) samples left at each decided position
    correct_counts: np.ndarray  # int64 (P,) of them right
    left_macs: float  # total MACs of the samples that left
    search_cost: np.ndarray | None  # cost of the last decision, per member λ


class _CircularNode:
    """Per-sample fates of one full configuration, and the situation of every position
    (``parent``: a node whose leave masks are reused where the configurations agree)."""

    def __init__(self, searcher: _Searcher, config: tuple,
                 parent: _CircularNode | None = None) -> None:
        self.searcher = searcher
        self.config = config
        records = searcher.records
        num_samples, num_positions = searcher.num_samples, searcher.num_positions
        pairs = check_config([list(c) for c in config], num_positions, searcher.num_types)
        self.leave: dict[int, np.ndarray] = {}
        self.rows: dict[int, int] = {}
        for p, (k, t) in enumerate(pairs):
            if k >= 0 and parent is not None and parent.config[p] == config[p]:
                self.rows[p], self.leave[p] = parent.rows[p], parent.leave[p]  # shared, read-only
            elif k >= 0:
                self.rows[p] = records.exit_index(p, k)
                self.leave[p] = exceeds(searcher.confs[self.rows[p]], t)
        self.leave_macs = position_macs(searcher.info, pairs)
        # Before the first position that differs from the parent, nothing does.
        start = 0 if parent is None else next(
            (p for p in range(num_positions - 1) if parent.config[p] != config[p]),
            num_positions - 1)
        self.exit_counts = np.zeros(num_positions, dtype=np.int64)
        self.correct_counts = np.zeros(num_positions, dtype=np.int64)
        self.arrive_at: list[np.ndarray] = []  # shared with the parent, read-only
        if start:
            self.exit_counts[:start] = parent.exit_counts[:start]
            self.correct_counts[:start] = parent.correct_counts[:start]
            self.arrive_at = parent.arrive_at[:start]
        remaining = np.ones(num_samples, dtype=bool) if parent is None \
            else parent.arrive_remaining(start)
        for p in range(start, num_positions - 1):
            self.arrive_at.append(remaining.copy())
            if p in self.leave:
                here = self.leave[p] & remaining
                self.exit_counts[p] = np.count_nonzero(here)
                self.correct_counts[p] = np.count_nonzero(here & searcher.correct[self.rows[p]])
                remaining &= ~here
        self.exit_counts[-1] = np.count_nonzero(remaining)
        self.correct_counts[-1] = np.count_nonzero(remaining & searcher.final_correct)
        total_macs = float(self.exit_counts @ self.leave_macs)
        self.macs = total_macs / num_samples
        if searcher.calibration:
            self.acc = float(searcher.calibrated(list(self.exit_counts), list(self.correct_counts)))
        else:
            self.acc = int(self.correct_counts.sum()) / num_samples
        self._codes: np.ndarray | None = None

    def arrive_remaining(self, p: int) -> np.ndarray:
        """bool ``(N,)``: a new array of the samples that reach position ``p`` (``P-1``: the
        final head)."""
        if p < len(self.arrive_at):
            return self.arrive_at[p].copy()
        remaining = self.arrive_at[-1].copy()
        last = len(self.arrive_at) - 1
        if last in self.leave:
            remaining &= ~self.leave[last]
        return remaining

    def set_codes(self, codes: np.ndarray) -> None:
        """Take the rest codes ``(P-1, N)`` of every position (derived by the caller)."""
        self._codes = codes

    def codes_at(self, p: int | slice) -> np.ndarray:
        """int ``(N,)``: ``2·position + right`` of where each sample would leave with ``p``
        disabled, -1 for the samples that do not arrive at ``p`` (see :func:`rest_codes`);
        ``(P-1, N)`` for every position when ``p`` is ``slice(None)``."""
        if self._codes is None:
            self._codes = self.codes_of(slice(None))
        return self._codes[p]

    def codes_of(self, labels: np.ndarray | slice) -> np.ndarray:
        """int ``(P-1, n)``: the rest codes (:func:`rest_codes`) of the samples ``labels`` at
        every position."""
        searcher = self.searcher
        positions = range(searcher.num_positions - 1)
        return rest_codes(
            [self.leave[q][labels] if q in self.leave else None for q in positions],
            [searcher.correct[self.rows[q]][labels] if q in self.rows else None
             for q in positions],
            searcher.final_correct[labels], searcher.code_type)

    def situation(self, p: int) -> _Situation:
        searcher = self.searcher
        num_positions = searcher.num_positions
        arrive = self.arrive_at[p]
        if any(q > p for q in self.leave):
            code = self.codes_at(p)
            tally = np.bincount(code.astype(np.intp) + 1, minlength=2 * num_positions + 1)
            return self.situation_from_tally(p, tally, code)
        # nothing enabled after p: everyone arriving reaches the final head (fast path)
        tally = np.zeros(2 * num_positions + 1, dtype=np.int64)
        arriving = int(np.count_nonzero(arrive))
        right = int(np.count_nonzero(arrive & searcher.final_correct))
        tally[2 * num_positions], tally[2 * num_positions - 1] = right, arriving - right
        situation = self.situation_from_tally(p, tally, None)
        situation.arrive = None if arriving == searcher.num_samples else arrive
        return situation

    def situation_from_tally(self, p: int, tally: np.ndarray,
                             code: np.ndarray | None) -> _Situation:
        """The situation at ``p`` from ``tally`` (int ``(2P+1,)``: samples per rest code + 1)."""
        searcher = self.searcher
        pairs = [(k, t) for k, t in self.config]
        pairs[p] = (-1, 1.0)
        table = position_macs(searcher.info, pairs)
        rest_correct = np.asarray(tally[1:][1::2], dtype=np.int64)
        rest_counts = np.asarray(tally[1:][0::2], dtype=np.int64) + rest_correct
        fixed_counts = self.exit_counts.copy()
        fixed_counts[p:] = 0
        fixed_correct = self.correct_counts.copy()
        fixed_correct[p:] = 0
        passed = sum(float(searcher.head[k, q]) for q, (k, _t) in enumerate(self.config[:p])
                     if k >= 0)
        fixed_macs = float(fixed_counts @ self.leave_macs)
        return _Situation(p, None, code, table, passed, fixed_counts, fixed_correct, fixed_macs,
                          rest_counts, rest_correct)
