"""The shared context of one search, where every speed device lives.

A :class:`SearchContext` holds what every search method reads: the records relabelled for
locality, each exit's sorted order (built once), the MACs tables, the cost scale, the worker
threads and their scratch buffers; and the :class:`Situation` of a position, the unit every
method scans. None of the devices below changes a result: each was introduced alone and
checked with ``benchmarks/search.py --dump`` (every configuration, figure and cost of onepass and
circular, floats exact, integer and fractional MACs) byte-identical before and after, on top of
the tests that compare every search with an exhaustive one (see ``docs/benchmarks.md``).

**Sample relabelling.** Samples are renumbered in descending order of their summed confidence.
Exits agree on which samples are easy, so each exit's sorted order then visits nearby labels
and the gathers along it stay in cache. Counts do not depend on labels, and sorted orders are
computed on the original labels (the same tie order), so the results are the same.

**Sorted orders once per exit.** :meth:`SearchContext.exit_order` (blocks for the scan of
:mod:`dyce.search.cuts`), :meth:`~SearchContext.exit_stack` (every exit type at one position
stacked), :meth:`~SearchContext.sample_blocks` and :meth:`~SearchContext.exit_table` (tie runs
for the calibrated curves) are cached: a search sorts each exit once however many λs and
configurations it visits.

**Worker threads.** From :data:`PARALLEL_MIN_SAMPLES` samples on (or with ``threads``) the exit
types of one step are scanned in a thread pool (numpy releases the GIL). Each curve is computed
exactly as in one thread and the results are combined in exit-type order, so the thread count
does not change a result.

**Thread-local scratch buffers.** A calibrated curve's ``best`` evaluates many cut ranges into
two float64 buffers of ``N+1`` values, one pair per thread (:meth:`SearchContext.scratch`)
instead of allocating per call; the values written are those of the allocating version.

**int8/int32 rest codes.** A sample's rest code ``2·position + right`` fits int8 below 64
positions (:attr:`SearchContext.code_type`, int32 above): the codes of every position and
sample take a quarter of the memory and gathers move less. Codes are exact integers either way.

**Packed float64 counts.** When a configuration changes, :meth:`dyce.search.cuts.BlockSums.updated`
adds three per-block count deltas packed into one float64 (base :data:`dyce.search.cuts.PACK`,
exact below 2**53), one scatter instead of three; the unpacked integers are the same counts.

**Tuning constants.** :data:`PARALLEL_MIN_SAMPLES` (threads), :data:`dyce.search.cuts.BLOCK` (block
size of the scan), :data:`dyce.search.cuts.SCAN_VALUES` (memory of one exact scan),
:data:`dyce.search.calibrated.TIE_SCAN_RATIO` (how tie runs are found) and
:data:`dyce.search.circular.REBUILD_FRACTION` (when circular rebuilds a state instead of updating
it) trade time for memory only; the tests run the extremes (e.g. ``REBUILD_FRACTION`` 0 and
above 1) against the reference.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dyce.errors import DyceError
from dyce.evaluate.exact import (
    CALIBRATION_QUANTILE,
    Evaluation,
    evaluation_from_counts,
    position_macs,
)
from dyce.macs.info import MacsInfo
from dyce.records.format import ExitRecords
from dyce.search.cost import cost_scale, evaluation_cost
from dyce.search.cuts import (
    BlockCurve,
    BlockSums,
    CurveSet,
    ExitOrder,
    ExitStack,
    block_sums,
    exit_order,
    sample_blocks,
    stack_exits,
)

#: Records with at least this many samples are searched with one thread per CPU by default
#: (1.28M samples: onepass 42 → 34 s wall on 2 cores; 100k: no gain).
PARALLEL_MIN_SAMPLES = 200_000


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


@dataclass
class Situation:
    """What position ``p`` sees when every other position is fixed (λ-independent).

    ``arrive``: bool ``(N,)`` samples reaching ``p`` (``None``: all). ``rest_code``: ``None`` when
    every arriving sample would reach the final head with ``p`` disabled, else int ``(N,)``
    ``2·position + right`` of the exit it would leave at instead (``-1``: does not arrive).
    ``rest_table``: float64 ``(P,)`` MACs of leaving at each position with ``p`` disabled.
    ``head_macs_before``: MACs of the enabled heads before ``p`` (paid by every sample
    reaching it). ``fixed_*``: samples that left before
    ``p`` (per-position counts and their total MACs). ``rest_counts``/``rest_correct_counts``:
    arriving samples per rest position, and how many of them are right.
    """

    position: int
    arrive: np.ndarray | None
    rest_code: np.ndarray | None
    rest_table: np.ndarray
    head_macs_before: float
    fixed_counts: np.ndarray
    fixed_correct: np.ndarray
    fixed_macs: float
    rest_counts: np.ndarray
    rest_correct_counts: np.ndarray


@dataclass
class ExitTable:
    """One exit's samples in descending order of confidence.

    ``order``: intp sample indices (the context's labels); ``conf``: float32 confidences;
    ``right``: bool whether the exit is right; ``gain``: int8 ``right − final head right``;
    ``tie_start``: int64 first sorted index of every run of equal confidences (runs of 2 or
    more); ``tie_members``: int64
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


def occurring_positions(rest_counts: np.ndarray) -> tuple[int, ...]:
    """The rest positions with arriving samples (``rest_counts`` int ``(P,)``), ascending; the
    final head when there are none."""
    return tuple(int(q) for q in np.flatnonzero(rest_counts > 0)) or (rest_counts.shape[0] - 1,)


class SearchContext:
    """Shared state of one search: the relabelled records, every exit's sorted order (computed
    once), MACs tables, the cost scale, the worker threads and their scratch buffers. Use it as
    a context manager (or call :meth:`close`) so that the worker threads stop."""

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
        self._sorted: dict[int, ExitTable] = {}
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

    def __enter__(self) -> SearchContext:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def threaded(self) -> bool:
        """Whether the curves of one step are computed in worker threads."""
        return self._pool is not None

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

    # ------------------------------------------------------------------ sorted orders

    def exit_table(self, row: int) -> ExitTable:
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
            table = ExitTable(order, conf_sorted, right, gain, tie_start, members, offset)
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
        return self.calibrated_sum([(count, correct, None)
                                    for count, correct in zip(counts, corrects, strict=True)])

    def calibrated_sum(self, terms: list) -> np.ndarray | float:
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

    def ramp(self) -> np.ndarray:
        """float64 ``0, 1, …, N`` (shared by the calibrated curves of the search)."""
        if self._ramp is None:
            self._ramp = np.arange(self.num_samples + 1, dtype=np.float64)
        return self._ramp

    def scratch(self) -> tuple[np.ndarray, np.ndarray]:
        """Two float64 ``(N+1,)`` work buffers of the calling thread (a calibrated curve's
        ``best`` runs in its own thread and overwrites them)."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = (np.empty(self.num_samples + 1, dtype=np.float64),
                       np.empty(self.num_samples + 1, dtype=np.float64))
            self._local.scratch = scratch
        return scratch

    def none_option(self, situation: Situation) -> tuple[float, float]:
        """(accuracy, mean MACs) when position ``p`` has no exit."""
        counts = situation.fixed_counts + situation.rest_counts
        corrects = situation.fixed_correct + situation.rest_correct_counts
        total_macs = situation.fixed_macs + float(situation.rest_counts @ situation.rest_table)
        if self.calibration:
            acc = float(self.calibrated(list(counts), list(corrects)))
        else:
            acc = int(corrects.sum()) / self.num_samples
        return acc, total_macs / self.num_samples

    # ------------------------------------------------------------------ curves

    def block_curve(self, situation: Situation, exit_type: int) -> BlockCurve:
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

    def leaver_macs(self, situation: Situation,
                    types: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """float64 ``(T', P)`` MACs change of a leaver of each of ``types`` at the situation's
        position by rest position, and ``(T',)`` the total MACs when none leaves there (every
        arriving sample pays the head)."""
        p = situation.position
        head = self.head[types, p].astype(np.float64)
        leave_cost = float(self.backbone[p]) + (situation.head_macs_before + head)
        count = int(situation.rest_counts.sum())
        base_macs = situation.fixed_macs + float(situation.rest_counts @ situation.rest_table) \
            + count * head
        return (leave_cost - head)[:, None] - situation.rest_table[None, :], base_macs

    @staticmethod
    def base_correct(situation: Situation) -> int:
        """Right samples when none leaves at the situation's position."""
        return int(situation.fixed_correct.sum()) + int(situation.rest_correct_counts.sum())

    def curve_set(self, situation: Situation, types: list[int] | None = None,
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

    # ------------------------------------------------------------------ results

    def result(self, method: str, lambda_: float, config: list, exit_counts, correct_counts,
               search_cost: float | None) -> SearchResult:
        """The :class:`SearchResult` of ``config`` from its per-position exit and right counts
        (its cost recomputed when the search did not keep it)."""
        pairs = [(int(k), float(t)) for k, t in config]
        evaluation = evaluation_from_counts(
            exit_counts, correct_counts, position_macs(self.info, pairs), self.info.ori_macs,
            self.final_correct_count, calibration=self.calibration,
        )
        if search_cost is None:
            search_cost = evaluation_cost(evaluation, lambda_, self.scale)
        return SearchResult(method, lambda_, [[int(k), float(t)] for k, t in config], evaluation,
                            float(search_cost))

    def progress_bar(self, total: int, desc: str):
        """A tqdm bar of ``total`` λs (disabled unless the search shows progress)."""
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, disable=not self.progress, leave=False)

