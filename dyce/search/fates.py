"""The per-sample fates of one full configuration, and the situation of each position in it.

For a configuration (``P-1`` pairs ``(exit_type, threshold)``), :class:`ConfigurationFates`
holds which samples leave where, and for every position ``p`` the samples' *rest codes*: where
each arriving sample would leave with ``p`` disabled (:func:`rest_codes`). Both circular
searches walk from configuration to configuration through it.
"""

from __future__ import annotations

import numpy as np

from dyce.evaluate.exact import check_config, exceeds, position_macs
from dyce.search.context import SearchContext, Situation


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


class ConfigurationFates:
    """Per-sample fates of one full configuration, and the situation of every position
    (``parent``: a node whose leave masks are reused where the configurations agree)."""

    def __init__(self, context: SearchContext, config: tuple,
                 parent: ConfigurationFates | None = None) -> None:
        self.context = context
        self.config = config
        records = context.records
        num_samples, num_positions = context.num_samples, context.num_positions
        pairs = check_config([list(c) for c in config], num_positions, context.num_types)
        self.leave: dict[int, np.ndarray] = {}
        self.rows: dict[int, int] = {}
        for p, (k, t) in enumerate(pairs):
            if k >= 0 and parent is not None and parent.config[p] == config[p]:
                self.rows[p], self.leave[p] = parent.rows[p], parent.leave[p]  # shared, read-only
            elif k >= 0:
                self.rows[p] = records.exit_index(p, k)
                self.leave[p] = exceeds(context.confs[self.rows[p]], t)
        self.leave_macs = position_macs(context.info, pairs)
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
                self.correct_counts[p] = np.count_nonzero(here & context.correct[self.rows[p]])
                remaining &= ~here
        self.exit_counts[-1] = np.count_nonzero(remaining)
        self.correct_counts[-1] = np.count_nonzero(remaining & context.final_correct)
        total_macs = float(self.exit_counts @ self.leave_macs)
        self.macs = total_macs / num_samples
        if context.calibration:
            self.acc = float(context.calibrated(list(self.exit_counts), list(self.correct_counts)))
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
        context = self.context
        positions = range(context.num_positions - 1)
        return rest_codes(
            [self.leave[q][labels] if q in self.leave else None for q in positions],
            [context.correct[self.rows[q]][labels] if q in self.rows else None
             for q in positions],
            context.final_correct[labels], context.code_type)

    def situation(self, p: int) -> Situation:
        """The situation of position ``p`` under this configuration."""
        context = self.context
        num_positions = context.num_positions
        arrive = self.arrive_at[p]
        if any(q > p for q in self.leave):
            code = self.codes_at(p)
            tally = np.bincount(code.astype(np.intp) + 1, minlength=2 * num_positions + 1)
            return self.situation_from_tally(p, tally, code)
        # nothing enabled after p: everyone arriving reaches the final head (fast path)
        tally = np.zeros(2 * num_positions + 1, dtype=np.int64)
        arriving = int(np.count_nonzero(arrive))
        right = int(np.count_nonzero(arrive & context.final_correct))
        tally[2 * num_positions], tally[2 * num_positions - 1] = right, arriving - right
        situation = self.situation_from_tally(p, tally, None)
        situation.arrive = None if arriving == context.num_samples else arrive
        return situation

    def situation_from_tally(self, p: int, tally: np.ndarray,
                             code: np.ndarray | None) -> Situation:
        """The situation at ``p`` from ``tally`` (int ``(2P+1,)``: samples per rest code + 1)."""
        context = self.context
        pairs = [(k, t) for k, t in self.config]
        pairs[p] = (-1, 1.0)
        table = position_macs(context.info, pairs)
        rest_correct = np.asarray(tally[1:][1::2], dtype=np.int64)
        rest_counts = np.asarray(tally[1:][0::2], dtype=np.int64) + rest_correct
        fixed_counts = self.exit_counts.copy()
        fixed_counts[p:] = 0
        fixed_correct = self.correct_counts.copy()
        fixed_correct[p:] = 0
        head_macs_before = sum(float(context.head[k, q])
                               for q, (k, _t) in enumerate(self.config[:p]) if k >= 0)
        fixed_macs = float(fixed_counts @ self.leave_macs)
        return Situation(p, None, code, table, head_macs_before, fixed_counts, fixed_correct,
                         fixed_macs, rest_counts, rest_correct)
