"""``circular`` on block curves, one configuration after another, each derived from the last.

A configuration's *state* holds, for every position ``p``, how each sample would fare with
``p`` disabled (its rest code, and a tally of them) and the block sums of every exit type's
sorted order (:mod:`dyce.search.cuts`; a scan reads the codes of its few blocks through the exit's
order). A change at one position ``q`` alters the fate of only the samples whose leaving (or
correctness) at ``q`` changes; a child state copies its parent's codes and rewrites just those
samples, and updates the block sums by their deltas (the state is rebuilt when more than
:data:`REBUILD_FRACTION` of the samples change). Configurations are explored depth
first, so only the states on the current path are alive. λs that take the same change share
the child, and the options at the changed position carry over (its situation is unchanged).

The results are those of the round-by-round search over full situations
(:mod:`dyce.search.circular_reference`, which the tests compare with): every λ still applies
the single change that lowers its cost most (first position, then exit type, then "none" on
ties) until none does.
"""

from __future__ import annotations

import warnings

import numpy as np

from dyce.search.context import SearchContext, SearchResult, Situation, occurring_positions
from dyce.search.cost import IMPROVEMENT_TOLERANCE, cost
from dyce.search.cuts import BlockSums, block_sums
from dyce.search.fates import ConfigurationFates

#: Relative allowance for rounding when costs are compared with the ceiling (costs are O(1)).
RELATIVE_MARGIN = 1e-9

#: Above this fraction of samples whose fate changes, a child state is rebuilt from scratch.
REBUILD_FRACTION = 0.5


class _State:
    """One configuration: counts and leave masks (a ``ConfigurationFates``), the rest codes
    ``(P-1, N)`` of every sample at every position, and per position the rest-code tally and
    the block sums of every exit type's sorted order; per position the options computed so far
    (λ index → (cost per exit type, cut per exit type, cost of "none"))."""

    def __init__(self, node, codes: np.ndarray, tallies: list[np.ndarray],
                 sums: list[BlockSums]) -> None:
        self.node = node
        self.config = node.config
        self.codes = codes
        self.tallies = tallies
        self.sums = sums
        self.options: list[dict[int, tuple]] = [{} for _ in tallies]
        self._situations: dict[int, Situation] = {}

    def situation(self, p: int) -> Situation:
        if p not in self._situations:
            self._situations[p] = self.node.situation_from_tally(p, self.tallies[p], None)
        return self._situations[p]


def fresh_state(context: SearchContext, node) -> _State:
    """Every situation and curve of ``node``'s configuration computed from scratch."""
    num_positions = context.num_positions
    tallies, sums = [], []
    for p in range(num_positions - 1):
        code = node.codes_at(p)
        tally = np.bincount(code.astype(np.intp) + 1, minlength=2 * num_positions + 1)
        stack = context.exit_stack(p)
        codes, _ = context.sorted_codes(stack, rest_code=code)
        rest_counts = tally[1::2] + tally[2::2]  # tally: samples per rest code + 1
        sums.append(block_sums(stack.right.reshape(codes.shape), stack.block, codes,
                               occurring_positions(rest_counts), num_positions))
        tallies.append(tally)
    return _State(node, node.codes_at(slice(None)), tallies, sums)


def child_state(context: SearchContext, parent: _State, position: int, exit_type: int,
                threshold: float) -> _State:
    """The state after setting ``position`` to ``(exit_type, threshold)``."""
    config = list(parent.config)
    config[position] = (exit_type, threshold)
    node = ConfigurationFates(context, tuple(config), parent.node)
    num_samples = context.num_samples
    old_leave = parent.node.leave.get(position)
    new_leave = node.leave.get(position)
    none = np.zeros(num_samples, dtype=bool)
    old_leave = none if old_leave is None else old_leave
    new_leave = none if new_leave is None else new_leave
    differs = old_leave != new_leave
    if position in parent.node.rows and position in node.rows:
        both = old_leave & new_leave
        differs |= both & (context.correct[parent.node.rows[position]]
                           != context.correct[node.rows[position]])
    # A sample that would leave at two enabled positions before the change never reaches it,
    # whichever single position is disabled: none of its rest codes depends on the change.
    earlier = [leave for p, leave in node.leave.items() if p < position]
    if len(earlier) >= 2:
        leaving = np.zeros(num_samples, dtype=np.int16)
        for leave in earlier:
            leaving += leave
        differs &= leaving <= 1
    labels = np.flatnonzero(differs)
    if labels.shape[0] > REBUILD_FRACTION * num_samples:
        return fresh_state(context, node)
    old = np.take(parent.codes, labels, axis=1)
    new = node.codes_of(labels)
    codes = parent.codes.copy()
    codes[:, labels] = new
    node.set_codes(codes)

    def update(p: int) -> tuple[np.ndarray, BlockSums]:
        changed = np.flatnonzero(old[p] != new[p]) if p != position else np.zeros(0, np.intp)
        if changed.shape[0] == 0:
            return parent.tallies[p], parent.sums[p]
        moved, before, after = labels[changed], old[p][changed], new[p][changed]
        tally = parent.tallies[p].copy()
        np.subtract.at(tally, before.astype(np.intp) + 1, 1)
        np.add.at(tally, after.astype(np.intp) + 1, 1)
        placed = np.take(context.sample_blocks(p), moved, axis=0)  # (n, T)
        return tally, parent.sums[p].updated(placed, before, after)

    updates = context.map(update, range(context.num_positions - 1))
    return _State(node, codes, [tally for tally, _ in updates], [sums for _, sums in updates])


class _Prepared:
    """The curves at one position of a state with their block bounds and the costs of no
    leaver (cut 0) and of "none", for some λs."""

    def __init__(self, context: SearchContext, state: _State, p: int, lambdas: np.ndarray,
                 ids: list[int]) -> None:
        scale = context.scale
        self.state, self.p, self.lambdas, self.ids = state, p, lambdas, ids
        self.scale = scale
        self.curves = _curves(context, state, p)
        self.bounds = self.curves.bounds(lambdas, scale.acc_span, scale.macs_span)
        total = self.curves.num_samples
        #: (T, L) cost with the type at p and nobody leaving there: cost − value of any cut
        self.zero = cost(self.curves.base_correct / total,
                         (self.curves.base_macs / total)[:, None], lambdas[None, :], scale)
        none_acc, none_macs = context.none_option(state.situation(p))
        self.none = cost(none_acc, none_macs, lambdas, scale)

    def reachable(self) -> np.ndarray:
        """``(L,)``: the cost of an option known to exist (up to rounding): the best valid
        block boundary of any type, or "none" where the position has an exit."""
        best = (self.zero - self.bounds.lower).min(axis=0)
        if self.state.config[self.p][0] >= 0:
            best = np.minimum(best, self.none)
        return best

    def options(self, ceiling: np.ndarray) -> None:
        """Store the options. ``ceiling`` ``(L,)``: costs above it cannot matter (another
        option reaches it); cuts that cannot beat it are not scanned, and a type none of whose
        cuts can is stored with the cost of its best scanned cut, which is above the ceiling."""
        margin = RELATIVE_MARGIN * (1.0 + np.abs(ceiling))
        floor = self.zero - (ceiling + margin)[None, :]
        scale = self.scale
        cut, acc, macs = self.curves.best(self.lambdas, scale.acc_span, scale.macs_span,
                                          floor=floor, bounds=self.bounds)
        costs = cost(acc, macs, self.lambdas[None, :], scale)  # (T, L)
        found = self.state.options[self.p]
        for j, member in enumerate(self.ids):
            found[member] = (tuple(costs[:, j].tolist()), tuple(cut[:, j].tolist()),
                             float(self.none[j]))


def _curves(context: SearchContext, state: _State, p: int):
    return context.curve_set(state.situation(p), by_sample=state.codes[p], sums=state.sums[p])


def circular(context: SearchContext, lambdas: list[float], *, max_rounds: int = 1000,
             tolerance: float = IMPROVEMENT_TOLERANCE) -> list[SearchResult]:
    """Circular search of every λ (see the module docstring); a λ applies a change only when it
    lowers its cost by more than ``tolerance``, at most ``max_rounds`` changes."""
    lams = np.asarray(lambdas, dtype=np.float64)
    results: list[SearchResult | None] = [None] * len(lambdas)
    start = tuple((-1, 1.0) for _ in range(context.num_positions - 1))
    stopped = False
    # (parent state or None, change (position, exit type, threshold) or None, λ ids, rounds)
    stack: list[tuple] = [(None, None, list(range(len(lambdas))), 0)]
    with context.progress_bar(len(lambdas), "circular") as bar:
        while stack:
            parent, change, ids, rounds = stack.pop()
            if parent is None:
                state = fresh_state(context, ConfigurationFates(context, start))
            else:
                state = child_state(context, parent, *change)
                inherited = parent.options[change[0]]
                state.options[change[0]] = {i: inherited[i] for i in ids}
            lam = lams[ids]
            best_cost = np.full(len(ids), np.inf)
            best: list = [None] * len(ids)
            todo = [p for p in range(context.num_positions - 1)
                    if any(i not in state.options[p] for i in ids)]

            def prepare(p: int, state=state, ids=ids) -> _Prepared:
                missing = [i for i in ids if i not in state.options[p]]
                return _Prepared(context, state, p, lams[missing], missing)

            prepared = context.map(prepare, todo)
            # Costs some option reaches (or no change at all): per λ, only options that can
            # beat the lowest of them need exact scans.
            current = cost(state.node.acc, state.node.macs, lam, context.scale)
            ceiling = dict(zip(ids, (current - tolerance).tolist(), strict=True))
            for p in range(context.num_positions - 1):
                for member, (costs, _cuts, none_cost) in state.options[p].items():
                    if member in ceiling:
                        reach = min(costs + ((none_cost,) if state.config[p][0] >= 0 else ()))
                        ceiling[member] = min(ceiling[member], reach)
            for part in prepared:
                for member, reach in zip(part.ids, part.reachable().tolist(), strict=True):
                    ceiling[member] = min(ceiling[member], reach)

            def finish(part: _Prepared, ceiling=ceiling) -> None:
                part.options(np.asarray([ceiling[i] for i in part.ids]))

            context.map(finish, prepared)
            computed = {part.p: part.curves for part in prepared}
            for p in range(context.num_positions - 1):
                found = state.options[p]
                enabled = state.config[p][0] >= 0
                for j, member in enumerate(ids):
                    costs, cuts, none_cost = found[member]
                    for exit_type, option_cost in enumerate(costs):
                        if option_cost < best_cost[j]:
                            best_cost[j] = option_cost
                            best[j] = (p, exit_type, cuts[exit_type])
                    if enabled and none_cost < best_cost[j]:
                        best_cost[j] = none_cost
                        best[j] = (p, -1, 0)
            improve = best_cost < current - tolerance
            children: dict[tuple, list[int]] = {}
            for j, member in enumerate(ids):
                if improve[j] and rounds < max_rounds:
                    children.setdefault(best[j], []).append(member)
                    continue
                stopped = stopped or bool(improve[j])
                results[member] = context.result("circular", float(lams[member]),
                                                  list(state.config), state.node.exit_counts,
                                                  state.node.correct_counts, None)
                bar.update(1)
            for (p, exit_type, cut), members in children.items():
                threshold = 1.0
                if exit_type >= 0:
                    curves = computed.get(p) or _curves(context, state, p)
                    threshold = float(curves.threshold(exit_type, np.asarray([cut]))[0])
                stack.append((state, (p, exit_type, threshold), members, rounds + 1))
    if stopped:
        warnings.warn(f"circular search stopped after max_rounds={max_rounds}", stacklevel=3)
    return results  # type: ignore[return-value]
