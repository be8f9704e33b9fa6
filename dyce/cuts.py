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
    ``right``: int8 ``(nb·B,)`` whether the exit is right (padding 0); ``gain_final``: int8
    ``right − final head right`` (padding 0); ``valid``: bool ``(nb, B)`` whether the cut after
    element ``b·B + t`` is allowed; ``boundary_valid``: bool ``(nb + 1,)`` the same for cut ``b·B``.
    """

    order: np.ndarray
    conf: np.ndarray
    right: np.ndarray
    gain_final: np.ndarray
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
    gain = np.zeros(padded, dtype=np.int8)
    np.subtract(right8[:count], final_right.view(np.int8), out=gain[:count])
    # Cut i (1 … N) is allowed when it splits no run of equal confidences and the last leaver's
    # confidence is above 0 (a confidence of 0 never exceeds a threshold).
    cut_valid = np.zeros(padded + 1, dtype=bool)
    cut_valid[0] = True
    if count:
        np.greater(conf, 0, out=cut_valid[1:count + 1])
        cut_valid[1:count] &= conf[:-1] != conf[1:]
    return ExitOrder(order, conf, right8, gain, cut_valid[1:].reshape(blocks, block),
                     cut_valid[::block].copy(), block)


@dataclass
class BlockCurve:
    """Every cut of one (position, exit type) in one situation, λ-independent.

    ``gain``: int8 ``(nb, B)`` per element, right leaver minus right rest fate (0 when not
    arriving). ``rest``: int ``(nb, B)`` rest position of each arriving element, ``-1`` for the
    others. ``positions``: the rest positions that occur, ascending; ``weights``: float64 MACs
    change per leaver for each of them. Accuracy at cut ``j`` (``j`` arriving leavers) is
    ``(base_correct + G)/N``, mean MACs ``(base_macs + Σ_r c_r·w_r)/N``.
    """

    exit: ExitOrder
    gain: np.ndarray
    rest: np.ndarray
    positions: tuple[int, ...]
    weights: np.ndarray
    count: int
    base_correct: int
    base_macs: float
    gain_start: np.ndarray = field(init=False)  # int64 (nb + 1,) G at each block start
    rest_start: np.ndarray = field(init=False)  # int64 (nb + 1, R) c_r at each block start
    rest_block: np.ndarray = field(init=False)  # int64 (nb, R) c_r within each block
    raises: np.ndarray = field(init=False)  # int64 (nb,) elements with gain > 0

    def __post_init__(self) -> None:
        blocks, block = self.exit.valid.shape
        starts = np.arange(0, blocks * block, block)
        self.raises = _block_sums(self.gain > 0, starts)
        self.gain_start = np.zeros(blocks + 1, dtype=np.int64)
        np.cumsum(_block_sums(self.gain, starts), out=self.gain_start[1:])
        if len(self.positions) == 1:  # every arriving element shares one rest position
            self.rest_block = _block_sums(self.rest >= 0, starts)[:, None]
        else:
            self.rest_block = np.stack([_block_sums(self.rest == r, starts)
                                        for r in self.positions], axis=1)
        self.rest_start = np.zeros((blocks + 1, len(self.positions)), dtype=np.int64)
        np.cumsum(self.rest_block, axis=0, out=self.rest_start[1:])
        self.gain = self.gain.reshape(blocks, block)
        self.rest = self.rest.reshape(blocks, block)
        self._arrive_start: np.ndarray | None = None

    @property
    def num_samples(self) -> int:
        return self.exit.num_samples

    def _values(self, gained: np.ndarray, counts: list[np.ndarray], weight_acc: np.ndarray,
                weight_macs: np.ndarray) -> np.ndarray:
        """``V`` with ``gained`` ``G`` and ``counts[r]`` ``c_r`` (int arrays of one shape ``S``)
        for λ weights ``weight_acc`` ``(L,)`` and ``weight_macs`` ``(L, R)``: float64 ``(L, *S)``.

        Always ``((a·G − c_0·bw_0) − c_1·bw_1) − …`` in this order, so a cut's value is the same
        float wherever it is computed."""
        extra = (slice(None),) + (None,) * gained.ndim
        value = gained[None] * weight_acc[extra]
        for r, count in enumerate(counts):
            value -= count[None] * weight_macs[(slice(None), r) + extra[1:]]
        return value

    def best(self, lambdas: np.ndarray, acc_span: float,
             macs_span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per λ: the first cut of largest value, as ``(j, accuracy, mean MACs)``.

        ``j`` int64 ``(L,)`` is the number of arriving leavers; accuracy and MACs are float64
        figures of the whole configuration at that cut.
        """
        lambdas = np.asarray(lambdas, dtype=np.float64)
        total = self.num_samples
        weight_acc = lambdas / (total * acc_span)
        weight_macs = ((1.0 - lambdas) / (total * macs_span))[:, None] * self.weights[None, :]
        starts = [self.rest_start[:, r] for r in range(len(self.positions))]
        boundary = self._values(self.gain_start, starts, weight_acc, weight_macs)  # (L, nb+1)
        lower = np.where(self.exit.boundary_valid[None, :], boundary, -np.inf).max(axis=1)
        upper = (boundary[:, :-1] + weight_acc[:, None] * self.raises[None, :]
                 + np.maximum(-weight_macs, 0.0) @ self.rest_block.T.astype(np.float64))
        slack = BOUND_SLACK * total * (np.abs(weight_acc) + np.abs(weight_macs).sum(axis=1))
        candidate = upper >= (lower - slack)[:, None]
        blocks = np.flatnonzero(candidate.any(axis=0))

        count = lambdas.shape[0]
        gained = np.zeros(count, dtype=np.int64)
        leavers = np.zeros((len(self.positions), count), dtype=np.int64)
        if blocks.shape[0]:
            gain = self.gain_start[blocks][:, None] + np.cumsum(self.gain[blocks], axis=1,
                                                                 dtype=np.int64)
            rest = self.rest[blocks]
            if len(self.positions) == 1:
                counts = [np.cumsum(rest >= 0, axis=1, dtype=np.int64)]
            else:
                counts = [np.cumsum(rest == r, axis=1, dtype=np.int64) for r in self.positions]
            for r, value in enumerate(counts):
                value += self.rest_start[blocks, r][:, None]
            invalid = ~self.exit.valid[blocks]
            chunk = max(1, SCAN_VALUES // gain.size)
            for first in range(0, count, chunk):
                part = slice(first, first + chunk)
                value = self._values(gain, counts, weight_acc[part], weight_macs[part])
                value[:, invalid] = -np.inf
                value = value.reshape(value.shape[0], -1)
                where = np.argmax(value, axis=1)
                # Cut 0 (value 0) comes first: a later cut wins only when strictly better.
                wins = value[np.arange(value.shape[0]), where] > 0.0
                row, column = np.divmod(where[wins], gain.shape[1])
                chosen = np.flatnonzero(wins) + first
                gained[chosen] = gain[row, column]
                for r, value_r in enumerate(counts):
                    leavers[r, chosen] = value_r[row, column]
        cut = leavers.sum(axis=0)
        moved = leavers[0] * self.weights[0]
        for r in range(1, len(self.positions)):
            moved = moved + leavers[r] * self.weights[r]
        return (cut, (self.base_correct + gained) / total, (self.base_macs + moved) / total)

    def _element(self, index: int) -> int:
        """Sorted-order position of the ``index``-th (0-based) arriving element."""
        if self._arrive_start is None:
            self._arrive_start = self.rest_start.sum(axis=1)
        block = int(np.searchsorted(self._arrive_start, index, side="right")) - 1
        inside = np.flatnonzero(self.rest[block] >= 0)[index - self._arrive_start[block]]
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
