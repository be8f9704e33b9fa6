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

from dataclasses import dataclass, field

import numpy as np

#: Samples per block (below 2**15). Smaller blocks bound tighter but cost more per λ
#: (see docs/benchmarks.md).
BLOCK = 128

#: Relative slack of the block bounds against floating-point rounding (values are O(1)).
BOUND_SLACK = 1e-9

#: Most float64 values the exact scan of one call holds at once (λs are chunked beyond it).
SCAN_VALUES = 1 << 22


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


@dataclass
class BlockSums:
    """Per block of one exit's sorted order in one situation (``nb`` blocks, ``P`` positions).

    ``gain``: int64 ``(nb,)`` sum of the elements' gains (right leaver minus right rest fate);
    ``raises``: int64 ``(nb,)`` elements with gain > 0; ``rest``: int64 ``(nb, P)`` arriving
    elements by rest position.
    """

    gain: np.ndarray
    raises: np.ndarray
    rest: np.ndarray

    def updated(self, exit: ExitOrder, where: np.ndarray, old: np.ndarray,
                new: np.ndarray) -> BlockSums:
        """The sums after the elements at sorted positions ``where`` change code ``old`` → ``new``
        (a copy; ``self`` is unchanged)."""
        blocks = where // exit.block
        right = exit.right[where]
        before, after = element_gain(right, old), element_gain(right, new)
        count = self.gain.shape[0]
        gain = self.gain + np.bincount(blocks, after.astype(np.float64) - before, count
                                       ).astype(np.int64)
        raises = self.raises + np.bincount(
            blocks, (after > 0).astype(np.float64) - (before > 0), count).astype(np.int64)
        positions = self.rest.shape[1]
        left, came = old >= 0, new >= 0
        rest = self.rest.ravel() - np.bincount(
            blocks[left] * positions + (old[left] >> 1), minlength=count * positions)
        rest += np.bincount(blocks[came] * positions + (new[came] >> 1),
                            minlength=count * positions)
        rest = rest.reshape(self.rest.shape)
        return BlockSums(gain, raises, rest)


def element_gain(right: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """int8 gain of elements: exit right (int8 0/1) minus rest fate right (``code & 1``), 0 for
    elements not arriving (``code < 0``)."""
    return (right - (codes & 1)).astype(np.int8, copy=False) * (codes >= 0)


def block_sums(exit: ExitOrder, codes: np.ndarray, positions: tuple[int, ...],
               num_positions: int, gain: np.ndarray | None = None) -> BlockSums:
    """:class:`BlockSums` of ``codes`` (flat, ``nb·B``: ``2·rest position + rest right``, -1 for
    elements not arriving) whose rest positions are among ``positions``; ``gain``: their
    :func:`element_gain` when the caller has it."""
    starts = np.arange(0, exit.padded, exit.block)
    arriving = codes >= 0
    gain = element_gain(exit.right, codes) if gain is None else gain
    rest = np.zeros((starts.shape[0], num_positions), dtype=np.int64)
    if len(positions) == 1:
        rest[:, positions[0]] = _block_sums(arriving, starts)
    else:
        rest_position = codes >> 1
        for r in positions:
            rest[:, r] = _block_sums(rest_position == r, starts)
    return BlockSums(_block_sums(gain, starts), _block_sums(gain > 0, starts), rest)


@dataclass
class BlockCurve:
    """Every cut of one (position, exit type) in one situation, λ-independent.

    ``codes``: int ``(nb·B,)`` per element ``2·rest position + rest right`` (the exit the sample
    would leave at with this position disabled, and whether it is right there), -1 when the
    sample does not arrive. ``sums``: their :class:`BlockSums`. ``weights``: float64 ``(P,)``
    MACs change per leaver by rest position. Accuracy at cut ``j`` (``j`` arriving leavers) is
    ``(base_correct + G)/N``, mean MACs ``(base_macs + Σ_r c_r·w_r)/N``.
    """

    exit: ExitOrder
    codes: np.ndarray
    sums: BlockSums
    weights: np.ndarray
    count: int
    base_correct: int
    base_macs: float
    positions: tuple[int, ...] = field(init=False)  # rest positions that occur, ascending
    gain_start: np.ndarray = field(init=False)  # int64 (nb + 1,) G at each block start
    macs_start: np.ndarray = field(init=False)  # float64 (nb + 1,) M at each block start
    arrive_start: np.ndarray = field(init=False)  # int64 (nb + 1,) arriving before each block
    saves: np.ndarray = field(init=False)  # float64 (nb,) MACs the block's leavers can save
    adds: np.ndarray = field(init=False)  # float64 (nb,) MACs the block's leavers can add
    steps: np.ndarray = field(init=False)  # float64 (2P + 1,) MACs change by code + 1

    def __post_init__(self) -> None:
        blocks, block = self.exit.valid.shape
        occurring = np.flatnonzero(self.sums.rest.sum(axis=0))
        self.positions = tuple(int(r) for r in occurring) or (self.weights.shape[0] - 1,)
        rest_block = self.sums.rest[:, list(self.positions)]
        rest_start = np.zeros((blocks + 1, len(self.positions)), dtype=np.int64)
        np.cumsum(rest_block, axis=0, out=rest_start[1:])
        self.gain_start = np.zeros(blocks + 1, dtype=np.int64)
        np.cumsum(self.sums.gain, out=self.gain_start[1:])
        # M at each block start, and per block the MACs its leavers can save or add at most.
        weights = self.weights[list(self.positions)]
        both = np.stack([weights, np.maximum(-weights, 0.0), np.maximum(weights, 0.0)], axis=1)
        self.macs_start = np.einsum("br,r->b", rest_start.astype(np.float64), weights)
        self.saves, self.adds = np.einsum("br,rk->kb", rest_block.astype(np.float64),
                                          both[:, 1:])
        self.arrive_start = rest_start.sum(axis=1)
        # MACs change per element by code + 1 (0 for samples not arriving).
        self.steps = np.zeros(2 * self.weights.shape[0] + 1, dtype=np.float64)
        self.steps[1::2] = self.weights
        self.steps[2::2] = self.weights
        self.codes = self.codes.reshape(blocks, block)

    @property
    def num_samples(self) -> int:
        return self.exit.num_samples

    def best(self, lambdas: np.ndarray, acc_span: float,
             macs_span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per λ: the first cut of largest value, as ``(j, accuracy, mean MACs)``.

        ``j`` int64 ``(L,)`` is the number of arriving leavers; accuracy and MACs are float64
        figures of the whole configuration at that cut. A cut's value is ``a·G − b·M`` with
        ``M`` the MACs moved: the sum over rest positions at its block's start plus the
        elements' changes inside the block, added in order (the same float for a cut wherever
        it is evaluated).
        """
        lambdas = np.asarray(lambdas, dtype=np.float64)
        total = self.num_samples
        weight_acc = (lambdas / (total * acc_span))[:, None]
        weight_macs = ((1.0 - lambdas) / (total * macs_span))[:, None]
        boundary = self.gain_start * weight_acc - self.macs_start * weight_macs  # (L, nb+1)
        lower = np.where(self.exit.boundary_valid, boundary, -np.inf).max(axis=1)
        upper = (boundary[:, :-1] + weight_acc * self.sums.raises
                 + np.where(weight_macs >= 0, weight_macs * self.saves, -weight_macs * self.adds))
        slack = BOUND_SLACK * total * (np.abs(weight_acc[:, 0]) + np.abs(weight_macs[:, 0])
                                       * np.abs(self.steps).max())

        count = lambdas.shape[0]
        gained = np.zeros(count, dtype=np.int64)
        moved = np.zeros(count, dtype=np.float64)
        cut = np.zeros(count, dtype=np.int64)
        candidate = upper >= (lower - slack)[:, None]  # (L, nb)
        if count == 1:  # one λ: its candidate blocks, no pairing
            blocks = np.flatnonzero(candidate[0])
        else:
            blocks = np.flatnonzero(candidate.any(axis=0))
        if blocks.shape[0] == 0:
            return (cut, (self.base_correct + gained) / total, (self.base_macs + moved) / total)
        codes = self.codes[blocks]
        right = self.exit.right.reshape(self.codes.shape)[blocks]
        gain = np.cumsum(element_gain(right, codes), axis=1, dtype=np.int64)
        gain += self.gain_start[blocks][:, None]
        macs = np.cumsum(np.take(self.steps, codes.astype(np.intp) + 1), axis=1)
        macs += self.macs_start[blocks][:, None]
        invalid = ~self.exit.valid[blocks]
        if count == 1:
            value = gain * weight_acc[0, 0] - macs * weight_macs[0, 0]
            value[invalid] = -np.inf
            where = int(np.argmax(value))
            row, col = np.divmod(np.asarray([where]), gain.shape[1])
            # Cut 0 (value 0) comes first: a later cut wins only when strictly better.
            chosen = np.flatnonzero(value.ravel()[where:where + 1] > 0.0)
            row, col = row[chosen], col[chosen]
        else:
            # Each λ scans only its own candidate blocks: (λ, block) pairs, λ-major, blocks
            # ascending, so the first maximum of a λ's pairs is its first best cut.
            lam, pair = np.nonzero(candidate[:, blocks])
            value = gain[pair] * weight_acc[lam] - macs[pair] * weight_macs[lam]  # (pairs, B)
            value[invalid[pair]] = -np.inf
            column = np.argmax(value, axis=1)
            peak = value[np.arange(pair.shape[0]), column]
            top = np.full(count, -np.inf)
            np.maximum.at(top, lam, peak)
            at_top = np.flatnonzero(peak == top[lam])
            first = at_top[_run_starts(lam[at_top])]
            first = first[peak[first] > 0.0]  # cut 0 (value 0) wins ties
            chosen, row, col = lam[first], pair[first], column[first]
        gained[chosen] = gain[row, col]
        moved[chosen] = macs[row, col]
        arriving = np.cumsum(codes[row] >= 0, axis=1)
        cut[chosen] = self.arrive_start[blocks[row]] + arriving[np.arange(row.shape[0]), col]
        return (cut, (self.base_correct + gained) / total, (self.base_macs + moved) / total)

    def _element(self, index: int) -> int:
        """Sorted-order position of the ``index``-th (0-based) arriving element."""
        block = int(np.searchsorted(self.arrive_start, index, side="right")) - 1
        inside = np.flatnonzero(self.codes[block] >= 0)[index - self.arrive_start[block]]
        return block * self.exit.block + int(inside)

    def threshold(self, cuts: np.ndarray) -> np.ndarray:
        """float64 threshold letting exactly ``cuts`` arriving samples leave: 1 when none, 0
        when all, else the midpoint of the last leaver's and the first stayer's confidences."""
        cuts = np.asarray(cuts)
        out = np.empty(cuts.shape, dtype=np.float64)
        for at, cut in np.ndenumerate(cuts):
            cut = int(cut)
            if cut == 0 or self.count == 0:
                out[at] = 1.0
            elif cut >= self.count:
                out[at] = 0.0
            else:
                upper = float(self.exit.conf[self._element(cut - 1)])
                lower = float(self.exit.conf[self._element(cut)])
                out[at] = midpoint(upper, lower)
        return out


def _run_starts(values: np.ndarray) -> np.ndarray:
    """bool mask of the first element of every run of equal values."""
    starts = np.empty(values.shape[0], dtype=bool)
    starts[:1] = True
    np.not_equal(values[1:], values[:-1], out=starts[1:])
    return starts


def _block_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """int64 sum of each block of ``values`` (bool or int8 in ``[-1, 1]``, flat, whole blocks);
    summed in int16 (a block holds fewer than 2**15 samples), the fastest numpy reduction."""
    if values.dtype == bool:
        values = values.view(np.int8)
    return np.add.reduceat(values, starts, dtype=np.int16).astype(np.int64)


def midpoint(upper: float, lower: float) -> float:
    """A threshold strictly below ``upper`` and not below ``lower`` (``lower < upper``): their
    midpoint, or ``lower`` where rounding puts the midpoint outside."""
    middle = lower + (upper - lower) * 0.5
    return middle if lower <= middle < upper else lower
