"""The exact cheapest cut of one exit for many λ, scanning only the blocks that can hold it.

An exit's samples are taken in descending order of its confidence (its *sorted order*: all
``N`` samples, arriving at the position or not). Cut ``i`` (``0 … N``) lets the arriving samples
among the first ``i`` leave. For λ its value (larger is better; cost = constant − value) is::

    V(i) = a·G(i) − Σ_r c_r(i)·(b·w_r)        a = λ/(N·acc_span), b = (1 − λ)/(N·macs_span)

``G(i)``: right leavers minus the right rest fates among them; ``c_r(i)``: leavers whose rest
fate is position ``r``; ``w_r``: MACs change of one such leaver. The winner is the first cut of
largest ``V`` that does not split equal confidences (or let a confidence of 0 leave).

Samples are stored in blocks of :data:`BLOCK`. Per block the counts at its start give the exact
``V`` of every block boundary, and counting only what can raise ``V`` (right leavers, leavers that
save MACs) bounds every cut inside it, for all λ at once. Only the blocks whose bound reaches the
best valid boundary are scanned exactly. ``V`` is computed from integer counts with the same
float operations wherever it is evaluated, so pruning changes no result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Samples per block (below 2**14: block sums are int16). Smaller blocks bound tighter but
#: cost more per λ (see docs/benchmarks.md).
BLOCK = 128

#: Relative slack of the block bounds against floating-point rounding (values are O(1)).
BOUND_SLACK = 1e-9

#: Most float64 values the exact scan holds at once: beyond it the λs are scanned in groups
#: (bounds that prune little, e.g. long runs of equal confidences, would otherwise need memory
#: proportional to types × λ × samples).
SCAN_VALUES = 1 << 22

#: Base packing three per-block counts of magnitude at most B into one float64 in
#: :meth:`BlockSums.updated`: above 2·B + 1 (B < 2**14), so that the packed sums separate
#: exactly (below 2**53).
PACK = 32768.0


@dataclass(frozen=True)
class ExitOrder:
    """One exit's samples in descending order of confidence, in blocks (built once per exit).

    ``order``: intp ``(N,)`` sample indices; ``conf``: float32 ``(N,)`` sorted confidences;
    ``right``: int8 ``(nb·B,)`` whether the exit is right (padding 0); ``final_right``: int8
    whether the final head is right (padding 0); ``valid``: bool ``(nb, B)`` whether the cut after
    element ``b·B + t`` is allowed; ``boundary_valid``: bool ``(nb + 1,)`` the same for cut ``b·B``.
    """

    order: np.ndarray
    conf: np.ndarray
    right: np.ndarray
    final_right: np.ndarray
    valid: np.ndarray
    boundary_valid: np.ndarray
    block: int

    @property
    def num_samples(self) -> int:
        return self.order.shape[0]

    @property
    def padded(self) -> int:
        """``nb·B``: the sample count rounded up to whole blocks (at least one)."""
        return self.valid.size


def exit_order(order: np.ndarray, conf: np.ndarray, right: np.ndarray, final_right: np.ndarray,
               block: int = BLOCK) -> ExitOrder:
    """Blocked sorted order of one exit.

    Args:
        order: intp ``(N,)`` sample indices in descending order of confidence (stable ties).
        conf: float32 ``(N,)`` the exit's confidences in that order.
        right: bool ``(N,)`` whether the exit is right, in that order.
        final_right: bool ``(N,)`` whether the final head is right, in that order.
        block: samples per block.
    """
    if not 1 <= block < 2**14:  # int16 block sums; PACK separates sums of magnitude ≤ block
        raise ValueError(f"block must be in [1, 2**14), got {block}")
    count = order.shape[0]
    blocks = max(1, -(-count // block))
    padded = blocks * block
    right8 = np.zeros(padded, dtype=np.int8)
    right8[:count] = right
    final8 = np.zeros(padded, dtype=np.int8)
    final8[:count] = final_right
    # Cut i (1 … N) is allowed when it splits no run of equal confidences and the last leaver's
    # confidence is above 0 (a confidence of 0 never exceeds a threshold).
    cut_valid = np.zeros(padded + 1, dtype=bool)
    cut_valid[0] = True
    if count:
        np.greater(conf, 0, out=cut_valid[1:count + 1])
        cut_valid[1:count] &= conf[:-1] != conf[1:]
    return ExitOrder(order, conf, right8, final8, cut_valid[1:].reshape(blocks, block),
                     cut_valid[::block].copy(), block)


@dataclass(frozen=True)
class ExitStack:
    """The exit types of one position, stacked: ``orders`` their :class:`ExitOrder`; ``right``
    and ``final_right`` int8 ``(T, nb, B)``; ``valid`` bool ``(T, nb, B)``; ``boundary_valid``
    bool ``(T, nb + 1)``."""

    orders: list[ExitOrder]
    right: np.ndarray
    final_right: np.ndarray
    valid: np.ndarray
    boundary_valid: np.ndarray

    @property
    def block(self) -> int:
        return self.orders[0].block

    @property
    def padded(self) -> int:
        """``nb·B``: each exit's sample count rounded up to whole blocks."""
        return self.orders[0].padded


def stack_exits(orders: list[ExitOrder]) -> ExitStack:
    """:class:`ExitStack` of exits with the same sample count and block."""
    shape = (len(orders),) + orders[0].valid.shape
    return ExitStack(list(orders), np.stack([e.right for e in orders]).reshape(shape),
                     np.stack([e.final_right for e in orders]).reshape(shape),
                     np.stack([e.valid for e in orders]),
                     np.stack([e.boundary_valid for e in orders]))


@dataclass
class BlockSums:
    """Per block of exits' sorted orders in one situation (``T`` exits, ``nb`` blocks, ``P``
    positions; :func:`block_sums` of one exit's codes without the type axis leaves out ``T``,
    :meth:`updated` needs it).

    ``gain``: int64 ``(T, nb)`` sum of the elements' gains (right leaver minus right rest fate);
    ``raises``: int64 ``(T, nb)`` elements with gain > 0; ``rest``: float64 ``(P + 1, T, nb)``
    arriving elements by rest position, and in row ``P`` the elements not arriving (padding
    included); whole numbers, exact.
    """

    gain: np.ndarray
    raises: np.ndarray
    rest: np.ndarray

    def updated(self, placed: np.ndarray, old: np.ndarray, new: np.ndarray) -> BlockSums:
        """The sums after ``n`` samples change code ``old`` → ``new`` (each ``(n,)``) in every
        exit; ``placed``: int32 ``(n, T)`` their rows of :func:`sample_blocks`. A copy; ``self``
        is unchanged."""
        wide, types, count = self.rest.shape
        size = types * count
        # Per sample, after minus before: right rest fate, arrival, and "a right leaver here
        # would gain" (arrives, rest fate wrong); packed into one float (each sums to at most B
        # in magnitude per block) and counted per (block, exit right) in one weighted bincount.
        left, came = old >= 0, new >= 0
        rest_right = (new & 1) * came - (old & 1) * left
        arrival = came.view(np.int8) - left.view(np.int8)
        gaining = (came & ((new & 1) == 0)).view(np.int8) - (left & ((old & 1) == 0)).view(np.int8)
        packed = rest_right + PACK * arrival + (PACK * PACK) * gaining  # float64 (n,)
        live = np.flatnonzero(packed)  # often half of them: a new rest fate, as right as before
        counted = np.take(placed, live, axis=0)
        totals = np.bincount(counted.reshape(-1), np.broadcast_to(
            packed[live, None], counted.shape).reshape(-1), 2 * size)
        # bincount returns int64 when no sample's packed change is non-zero
        totals = totals.astype(np.float64, copy=False).reshape(size, 2)
        gaining_sum = np.floor(totals / (PACK * PACK) + 0.5)
        totals -= gaining_sum * (PACK * PACK)
        arrival_sum = np.floor(totals / PACK + 0.5)
        rest_right_sum = totals - arrival_sum * PACK
        # gain: right leavers that arrive minus right rest fates; raises: right, gaining.
        gain_delta = arrival_sum[:, 1] - rest_right_sum[:, 0] - rest_right_sum[:, 1]
        gain = self.gain + gain_delta.astype(np.int64).reshape(types, count)
        raises = self.raises + gaining_sum[:, 1].astype(np.int64).reshape(types, count)
        # Elements by rest position (row P: not arriving); the element of type t in block b
        # with rest position r is at r·T·nb + (t·nb + b).
        blocks = placed >> 1
        not_arriving = wide - 1
        index = np.int32 if wide * size < 2**31 else np.int64  # int32 while it cannot wrap
        rest = self.rest.copy()
        flat = rest.reshape(-1)
        np.add.at(flat, (blocks + (np.where(came, new >> 1, not_arriving).astype(index)
                                   * size)[:, None]).reshape(-1), 1.0)
        np.subtract.at(flat, (blocks + (np.where(left, old >> 1, not_arriving).astype(index)
                                        * size)[:, None]).reshape(-1), 1.0)
        return BlockSums(gain, raises, rest)


def sample_blocks(stack: ExitStack, correct: np.ndarray) -> np.ndarray:
    """int32 ``(N, T)``: for every sample and exit type of ``stack``, ``2·b + right`` with ``b``
    the flat index ``t·nb + block`` of the block holding the sample in type ``t``'s sorted order
    and ``right`` whether that exit is right (``correct``: bool ``(T, N)`` by sample)."""
    types, blocks, block = stack.valid.shape
    if 2 * types * blocks >= 2**31:
        raise ValueError(f"{types} exits of {blocks} blocks: too many for int32 block indices")
    table = np.empty((correct.shape[1], types), dtype=np.int32)
    for t, exit in enumerate(stack.orders):
        place = np.arange(exit.num_samples, dtype=np.int32) // block + t * blocks
        column = np.empty(exit.num_samples, dtype=np.int32)
        column[exit.order] = place
        table[:, t] = 2 * column + correct[t]
    return table


def element_gain(right: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """int8 gain of elements: exit right (int8 0/1) minus rest fate right (``code & 1``), 0 for
    elements not arriving (``code < 0``)."""
    return (right - (codes & 1)).astype(np.int8, copy=False) * (codes >= 0)


def block_sums(right: np.ndarray, block: int, codes: np.ndarray, positions: tuple[int, ...],
               num_positions: int, gain: np.ndarray | None = None) -> BlockSums:
    """:class:`BlockSums` of ``codes`` (``(..., nb·B)``: ``2·rest position + rest right``, -1 for
    elements not arriving) whose rest positions are among ``positions``; ``right``: int8 the
    exits' correctness (same shape); ``gain``: the :func:`element_gain` when the caller has it."""
    shape = codes.shape[:-1]
    flat = codes.reshape(-1)
    starts = np.arange(0, flat.shape[0], block)
    arriving = flat >= 0
    gain = element_gain(right.reshape(-1), flat) if gain is None else gain.reshape(-1)
    rest = np.zeros((num_positions + 1, starts.shape[0]), dtype=np.float64)
    if len(positions) == 1:
        rest[positions[0]] = _block_sums(arriving, starts)
    else:
        rest_position = flat >> 1
        for r in positions:
            rest[r] = _block_sums(rest_position == r, starts)
    rest[num_positions] = block - rest[:num_positions].sum(axis=0)
    blocks = shape + (-1,)
    return BlockSums(_block_sums(gain, starts).reshape(blocks),
                     _block_sums(gain > 0, starts).reshape(blocks),
                     rest.reshape((num_positions + 1,) + blocks))


@dataclass(frozen=True)
class Bounds:
    """Block bounds of a :class:`CurveSet` for λs ``lambdas`` (``L``): weights ``a`` and ``b``
    ``(L,)``; ``lower`` ``(T, L)`` the best value at a valid block boundary (a cut that exists);
    ``upper`` ``(T, L, nb)`` no cut inside a block is worth more; ``slack`` ``(T, L)`` rounding
    allowance."""

    lambdas: np.ndarray
    weight_acc: np.ndarray
    weight_macs: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    slack: np.ndarray


@dataclass
class CurveSet:
    """Every cut of ``T`` exit types at one position in one situation, λ-independent.

    ``exits``: the types' stacked :class:`ExitOrder`. ``codes``: int ``(T, nb·B)`` per element
    ``2·rest position + rest right`` (the exit the sample would leave at with this position
    disabled, and whether it is right there), -1 when the sample does not arrive; or ``None``
    with ``by_sample`` the same codes by sample (int ``(N,)``), gathered for the few blocks a
    scan reads. ``sums``: their :class:`BlockSums` ``(T, …)``. ``weights``: float64 ``(T, P)``
    MACs change per leaver by rest position. ``positions``: the rest positions that occur, ascending
    (the same for every type: the situation's). Accuracy at cut ``j`` (``j`` arriving leavers) is
    ``(base_correct + G)/N``, mean MACs ``(base_macs[t] + M)/N``.
    """

    exits: ExitStack
    codes: np.ndarray | None
    sums: BlockSums
    weights: np.ndarray
    count: int
    base_correct: int
    base_macs: np.ndarray
    positions: tuple[int, ...]
    by_sample: np.ndarray | None = None

    def __post_init__(self) -> None:
        types, blocks, block = self.exits.valid.shape
        self.right, self.valid = self.exits.right, self.exits.valid
        self.boundary_valid = self.exits.boundary_valid
        if self.codes is not None:
            self.codes = self.codes.reshape(types, blocks, block)
        rest_block = self.sums.rest[list(self.positions)]  # (R, T, nb)
        # Arriving elements before each block (a block's elements less those not arriving).
        self.arrive_start = np.zeros((types, blocks + 1), dtype=np.float64)  # exact counts
        np.cumsum(block - self.sums.rest[-1], axis=1, out=self.arrive_start[:, 1:])
        self.gain_start = np.zeros((types, blocks + 1), dtype=np.int64)
        np.cumsum(self.sums.gain, axis=1, out=self.gain_start[:, 1:])
        # M at each block start, from the leavers' counts by rest position before it:
        # Σ_r c_r·w_r, r ascending (a function of the counts alone, not of the blocks' order,
        # so non-integer MACs round the same wherever a cut is evaluated from its start).
        weights = self.weights[:, list(self.positions)]  # (T, R)
        rest_start = np.zeros((len(self.positions), types, blocks + 1), dtype=np.float64)
        np.cumsum(rest_block, axis=2, out=rest_start[:, :, 1:])  # counts: exact in float64
        self.macs_start = rest_start[0] * weights[:, :1]
        for r in range(1, len(self.positions)):
            self.macs_start = self.macs_start + rest_start[r] * weights[:, r:r + 1]
        self._rest_block, self._weights = rest_block, weights
        self._saves: np.ndarray | None = None
        self._adds: np.ndarray | None = None
        self.steps = np.zeros((types, 2 * self.weights.shape[1] + 1), dtype=np.float64)
        self.steps[:, 1::2] = self.weights
        self.steps[:, 2::2] = self.weights

    @property
    def num_samples(self) -> int:
        return self.exits.orders[0].num_samples

    @property
    def saves(self) -> np.ndarray:
        """float64 ``(T, nb)``: the most MACs a block's leavers can save (for the bounds)."""
        if self._saves is None:
            self._saves = np.einsum("rtb,tr->tb", self._rest_block, np.maximum(-self._weights, 0))
        return self._saves

    @property
    def adds(self) -> np.ndarray:
        """float64 ``(T, nb)``: the most MACs a block's leavers can add (for λ above 1)."""
        if self._adds is None:
            self._adds = np.einsum("rtb,tr->tb", self._rest_block, np.maximum(self._weights, 0))
        return self._adds

    def bounds(self, lambdas: np.ndarray, acc_span: float, macs_span: float) -> Bounds:
        """The λ-vectorised block bounds of :meth:`best` (reusable by it)."""
        lambdas = np.asarray(lambdas, dtype=np.float64)
        total = self.num_samples
        weight_acc = lambdas / (total * acc_span)  # (L,)
        weight_macs = (1.0 - lambdas) / (total * macs_span)
        a, b = weight_acc[None, :, None], weight_macs[None, :, None]
        boundary = self.gain_start[:, None, :] * a - self.macs_start[:, None, :] * b  # (T,L,nb+1)
        lower = np.where(self.boundary_valid[:, None, :], boundary, -np.inf).max(axis=2)
        upper = boundary[:, :, :-1] + a * self.sums.raises[:, None, :]
        if (weight_macs >= 0).all():  # λ ≤ 1: leavers that save MACs raise the value
            upper += b * self.saves[:, None, :]
        else:
            upper += np.where(b >= 0, b * self.saves[:, None, :], -b * self.adds[:, None, :])
        reach = np.abs(self.steps).max(axis=1)[:, None]  # (T, 1)
        slack = BOUND_SLACK * total * (np.abs(weight_acc)[None, :]
                                       + np.abs(weight_macs)[None, :] * reach)
        return Bounds(lambdas, weight_acc, weight_macs, lower, upper, slack)

    def best(self, lambdas: np.ndarray, acc_span: float, macs_span: float,
             floor: np.ndarray | None = None,
             bounds: Bounds | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per type and λ: the first cut of largest value, as ``(j, accuracy, mean MACs)``.

        Each int64/float64 ``(T, L)``: ``j`` is the number of arriving leavers; accuracy and MACs
        are figures of the whole configuration at that cut. A cut's value is ``a·G − b·M`` with
        ``M`` the MACs moved: the block start's ``M`` plus the elements' changes inside the
        block, added in order (the same float for a cut wherever it is evaluated).

        ``floor`` (``(T, L)``, optional): values the caller does not need. Blocks whose bound
        stays below it are not scanned, so a type whose every cut stays below it reports its
        best scanned cut (at worst cut 0) instead of its best cut. ``bounds``: this call's
        :meth:`bounds`, when the caller computed them.
        """
        if bounds is None:
            bounds = self.bounds(lambdas, acc_span, macs_span)
        total = self.num_samples
        types, blocks, block = self.valid.shape
        count = bounds.lambdas.shape[0]
        weight_acc, weight_macs = bounds.weight_acc, bounds.weight_macs
        needed = bounds.lower - bounds.slack
        if floor is not None:
            needed = np.maximum(needed, floor - bounds.slack)
        candidate = bounds.upper >= needed[:, :, None]  # (T, L, nb)

        gained = np.zeros(types * count, dtype=np.int64)
        moved = np.zeros(types * count, dtype=np.float64)
        cut = np.zeros(types * count, dtype=np.int64)
        # λ groups whose (type, λ, block) triples fit SCAN_VALUES (at least one λ each).
        load = np.cumsum(candidate.sum(axis=(0, 2)) * block)
        first = 0
        while first < count:
            last = max(first + 1, int(np.searchsorted(load, (load[first - 1] if first else 0)
                                                      + SCAN_VALUES, side="right")))
            self._scan(candidate[:, first:last], first, count, weight_acc, weight_macs,
                       gained, moved, cut)
            first = last
        shape = (types, count)
        return (cut.reshape(shape), (self.base_correct + gained.reshape(shape)) / total,
                (self.base_macs[:, None] + moved.reshape(shape)) / total)

    def _scan(self, candidate: np.ndarray, offset: int, count: int, weight_acc: np.ndarray,
              weight_macs: np.ndarray, gained: np.ndarray, moved: np.ndarray,
              cut: np.ndarray) -> None:
        """Scan the candidate blocks ``(T, L', nb)`` of λs ``offset … offset+L'-1``; write the
        winners' ``G``, ``M`` and ``j`` into ``gained``, ``moved``, ``cut`` (flat ``(T·L,)``,
        zero where cut 0 wins)."""
        types, blocks, block = self.valid.shape
        kind, where = np.nonzero(candidate.any(axis=1))  # (type, block) to scan, U of them
        if kind.shape[0] == 0:
            return
        codes = self.block_codes(kind, where)  # (U, B)
        gain = np.cumsum(element_gain(self.right[kind, where], codes), axis=1, dtype=np.int64)
        gain += self.gain_start[kind, where][:, None]
        steps = np.take(self.steps.ravel(), codes.astype(np.intp)
                        + (1 + kind * self.steps.shape[1])[:, None])
        macs = np.cumsum(steps, axis=1)
        macs += self.macs_start[kind, where][:, None]
        invalid = ~self.valid[kind, where]
        scanned = np.full((types, blocks), -1, dtype=np.intp)
        scanned[kind, where] = np.arange(kind.shape[0])
        # (type, λ, block) triples, sorted: the first maximum of a (type, λ) group is its first
        # best cut.
        kinds, lam, blk = np.nonzero(candidate)
        lam = lam + offset
        row = scanned[kinds, blk]
        value = gain[row] * weight_acc[lam][:, None] - macs[row] * weight_macs[lam][:, None]
        value[invalid[row]] = -np.inf
        column = np.argmax(value, axis=1)
        peak = value[np.arange(row.shape[0]), column]
        group = kinds * count + lam
        top = np.full(types * count, -np.inf)
        np.maximum.at(top, group, peak)
        at_top = np.flatnonzero(peak == top[group])
        first = at_top[_run_starts(group[at_top])]
        first = first[peak[first] > 0.0]  # cut 0 (value 0) wins ties
        chosen, row, column = group[first], row[first], column[first]
        gained[chosen] = gain[row, column]
        moved[chosen] = macs[row, column]
        arriving = np.cumsum(codes[row] >= 0, axis=1)[np.arange(row.shape[0]), column]
        cut[chosen] = self.arrive_start[kind[row], where[row]].astype(np.int64) + arriving

    def _element(self, kind: int, index: int) -> int:
        """Sorted-order position of the ``index``-th (0-based) arriving element of type
        ``kind``."""
        starts = self.arrive_start[kind]
        block = int(np.searchsorted(starts, index, side="right")) - 1
        codes = self.block_codes(np.asarray([kind]), np.asarray([block]))[0]
        inside = np.flatnonzero(codes >= 0)[index - int(starts[block])]
        return block * self.valid.shape[2] + int(inside)

    def block_codes(self, kind: np.ndarray, where: np.ndarray) -> np.ndarray:
        """``(U, B)`` the codes of blocks ``where`` (intp ``(U,)``) of types ``kind``."""
        if self.codes is not None:
            return self.codes[kind, where]
        block = self.valid.shape[2]
        index = where[:, None] * block + np.arange(block)  # (U, B) places in the sorted orders
        codes = np.full(index.shape, -1, dtype=self.by_sample.dtype)
        for t in np.unique(kind).tolist():
            rows = np.flatnonzero(kind == t)
            places = index[rows]
            inside = places < self.num_samples  # the padding after the last sample stays -1
            part = codes[rows]
            part[inside] = self.by_sample[self.exits.orders[t].order[places[inside]]]
            codes[rows] = part
        return codes

    def threshold(self, kind: int, cuts: np.ndarray) -> np.ndarray:
        """float64 threshold letting exactly ``cuts`` arriving samples of type ``kind`` leave
        (:func:`cut_thresholds`)."""
        conf = self.exits.orders[kind].conf
        return cut_thresholds(cuts, self.count,
                              lambda index: float(conf[self._element(kind, index)]))


class BlockCurve:
    """The cuts of one exit type: a :class:`CurveSet` of one, with one-type results."""

    def __init__(self, curves: CurveSet) -> None:
        self.curves = curves

    def best(self, lambdas: np.ndarray, acc_span: float,
             macs_span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per λ: ``(j, accuracy, mean MACs)`` of the first best cut (see :meth:`CurveSet.best`)."""
        cut, acc, macs = self.curves.best(lambdas, acc_span, macs_span)
        return cut[0], acc[0], macs[0]

    def threshold(self, cuts: np.ndarray) -> np.ndarray:
        """See :meth:`CurveSet.threshold`."""
        return self.curves.threshold(0, cuts)


def _run_starts(values: np.ndarray) -> np.ndarray:
    """bool mask of the first element of every run of equal values."""
    starts = np.empty(values.shape[0], dtype=bool)
    starts[:1] = True
    np.not_equal(values[1:], values[:-1], out=starts[1:])
    return starts


def _block_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """int64 sum of each block of ``values`` (bool or int8 in ``[-1, 1]``, flat, whole blocks);
    summed in int16 (a block holds fewer than 2**14 samples), the fastest numpy reduction."""
    if values.dtype == bool:
        values = values.view(np.int8)
    return np.add.reduceat(values, starts, dtype=np.int16).astype(np.int64)


def cut_thresholds(cuts: np.ndarray, count: int,
                   confidence: Callable[[int], float]) -> np.ndarray:
    """float64 threshold letting exactly ``cuts`` of ``count`` arriving samples leave: 1 when
    none, 0 when all, else the :func:`midpoint` of the last leaver's and the first stayer's
    confidences (``confidence(i)``: that of the ``i``-th most confident arriving sample)."""
    cuts = np.asarray(cuts)
    out = np.empty(cuts.shape, dtype=np.float64)
    for at, cut in np.ndenumerate(cuts):
        cut = int(cut)
        if cut == 0 or count == 0:
            out[at] = 1.0
        elif cut >= count:
            out[at] = 0.0
        else:
            out[at] = midpoint(confidence(cut - 1), confidence(cut))
    return out


def midpoint(upper: float, lower: float) -> float:
    """A threshold strictly below ``upper`` and not below ``lower`` (``lower < upper``): their
    midpoint, or ``lower`` where rounding puts the midpoint outside."""
    middle = lower + (upper - lower) * 0.5
    return middle if lower <= middle < upper else lower
