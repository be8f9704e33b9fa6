"""The block-pruned cut scan equals a scan of every cut (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dyce.evaluate.exact import exceeds
from dyce.search.cuts import (
    BlockCurve,
    CurveSet,
    block_sums,
    exit_order,
    sample_blocks,
    stack_exits,
)


def brute_force_best(conf, arriving, gain, rest, weights, lambdas, acc_span, macs_span,
                     base_correct, base_macs):
    """Every cut of the arriving samples: first cut of largest ``a·G − b·M``, as (cut, acc,
    macs)."""
    total = conf.shape[0]
    members = np.flatnonzero(arriving)
    count = members.shape[0]
    results = []
    for lam in lambdas:
        weight_acc = lam / (total * acc_span)
        weight_macs = (1.0 - lam) / (total * macs_span)
        best = None
        for cut in range(count + 1):
            if 0 < cut < count and conf[members[cut - 1]] == conf[members[cut]]:
                continue  # splits equal confidences
            if cut == count and cut and conf[members[-1]] == 0:
                continue  # a confidence of 0 never leaves
            leaving = members[:cut]
            gained = int(gain[leaving].sum())
            moved = float(weights[rest[leaving]].sum())  # binary fractions: exact in any order
            value = gained * weight_acc - moved * weight_macs
            if best is None or value > best[0]:
                best = (value, cut, (base_correct + gained) / total, (base_macs + moved) / total)
        results.append(best[1:])
    return results


@settings(max_examples=300, deadline=None)
@given(data=st.data(), size=st.integers(1, 40), block=st.sampled_from([1, 2, 3, 4, 8, 64]),
       positions=st.integers(1, 3))
def test_pruned_scan_finds_the_first_best_cut_of_a_full_scan(data, size, block, positions):
    # Sorted confidences with ties and zeros (at most 5 distinct values).
    levels = data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=size,
                                max_size=size))
    conf = np.sort(np.array(levels, dtype=np.float32))[::-1].copy()
    arriving = np.array(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)),
                        dtype=bool)
    right = np.array(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)), bool)
    rest_right = np.array(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)),
                          bool)
    gain = (right.astype(np.int8) - rest_right) * arriving
    rest = np.where(arriving, np.array(data.draw(st.lists(
        st.integers(0, positions - 1), min_size=size, max_size=size)), dtype=np.int8), -1)
    weights = np.array(data.draw(st.lists(st.sampled_from([-3.0, -1.0, -0.5, 0.0, 0.5, 2.0]),
                                          min_size=positions, max_size=positions)))
    lambdas = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.3, 0.5, 0.77, 0.99, 1.0, 1.5]),
                                          min_size=1, max_size=6)))
    exit = exit_order(np.arange(size, dtype=np.intp), conf, right, np.zeros(size, bool),
                      block=block)
    codes = np.full(exit.padded, -1, np.int8)
    codes[:size] = np.where(arriving, 2 * rest + rest_right, -1)
    present = tuple(r for r in range(positions) if np.any(rest == r)) or (0,)
    sums = block_sums(exit.right[None], block, codes[None], present, positions)
    expected = brute_force_best(conf, arriving, gain, rest, weights, lambdas, 0.7, 5.0, 3, 7.0)
    # The codes in sorted order, or by sample (the order is the identity here).
    for sorted_codes, by_sample in ((codes[None], None), (None, codes[:size].copy())):
        curve = BlockCurve(CurveSet(stack_exits([exit]), sorted_codes, sums, weights[None],
                                    int(arriving.sum()), base_correct=3,
                                    base_macs=np.array([7.0]), positions=present,
                                    by_sample=by_sample))
        cut, acc, macs = curve.best(lambdas, acc_span=0.7, macs_span=5.0)
        assert [(int(c), float(a), float(m)) for c, a, m in zip(cut, acc, macs, strict=True)] \
            == [(c, a, m) for c, a, m in expected]
        # The threshold lets exactly the chosen arriving samples leave.
        for chosen, threshold in zip(cut, curve.threshold(cut), strict=True):
            assert int(np.count_nonzero(exceeds(conf[arriving], threshold))) == chosen


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=st.integers(1, 40), block=st.sampled_from([1, 3, 8, 64]),
       types=st.integers(1, 3))
def test_updating_block_sums_equals_summing_the_updated_codes(data, size, block, types):
    codes_strategy = st.lists(st.integers(-1, 5), min_size=size, max_size=size)
    old = np.array(data.draw(codes_strategy), dtype=np.int8)  # per sample
    new = old.copy()
    changed = np.array(sorted(data.draw(st.sets(st.integers(0, size - 1)))), dtype=np.intp)
    new[changed] = np.array(data.draw(st.lists(st.integers(-1, 5), min_size=changed.shape[0],
                                               max_size=changed.shape[0])), dtype=np.int8)
    exits, correct = [], []
    for _ in range(types):  # each type sorts the samples its own way
        order = np.array(data.draw(st.permutations(range(size))), dtype=np.intp)
        right = np.array(data.draw(st.lists(st.booleans(), min_size=size, max_size=size)), bool)
        exits.append(exit_order(order, np.ones(size, np.float32), right[order],
                                np.zeros(size, bool), block=block))
        correct.append(right)
    rights = np.stack([e.right for e in exits])
    sorted_codes = [np.full((types, exits[0].padded), -1, np.int8) for _ in range(2)]
    for t, e in enumerate(exits):
        sorted_codes[0][t, :size], sorted_codes[1][t, :size] = old[e.order], new[e.order]
    placed = sample_blocks(stack_exits(exits), np.stack(correct))[changed]
    updated = block_sums(rights, block, sorted_codes[0], (0, 1, 2), 3).updated(
        placed, old[changed], new[changed])
    fresh = block_sums(rights, block, sorted_codes[1], (0, 1, 2), 3)
    for name in ("gain", "raises", "rest"):
        assert np.array_equal(getattr(updated, name), getattr(fresh, name)), name


def test_scanning_lambdas_in_groups_changes_nothing(monkeypatch):
    """When the candidate blocks of all λs exceed SCAN_VALUES the λs are scanned in groups
    (bounded memory, e.g. long runs of equal confidences): same cuts and figures."""
    import dyce.search.cuts

    rng = np.random.default_rng(3)
    size, types = 3000, 3
    conf = np.sort(rng.choice([0.2, 0.5, 0.9], size).astype(np.float32))[::-1].copy()
    exits = [exit_order(rng.permutation(size).astype(np.intp), conf, rng.random(size) < 0.6,
                        rng.random(size) < 0.7) for _ in range(types)]
    codes = np.full((types, exits[0].padded), -1, np.int8)
    codes[:, :size] = rng.integers(-1, 6, (types, size))
    weights = np.tile(np.array([-2.0, -1.0, 0.5]), (types, 1))
    stack = dyce.search.cuts.stack_exits(exits)
    sums = block_sums(stack.right.reshape(types, -1), exits[0].block, codes, (0, 1, 2), 3)
    lambdas = np.linspace(0.0, 1.2, 25)

    def best():
        curves = dyce.search.cuts.CurveSet(stack, codes, sums, weights, int((codes >= 0).sum() // types),
                                    5, np.array([1.0, 2.0, 3.0]), (0, 1, 2))
        return curves.best(lambdas, 0.5, 10.0)

    expected = best()
    monkeypatch.setattr(dyce.search.cuts, "SCAN_VALUES", 1)
    for got, want in zip(best(), expected, strict=True):
        assert np.array_equal(got, want)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), block=st.sampled_from([1, 2, 8]))
def test_a_floor_only_skips_cuts_below_it(seed, block):
    """With a floor, every type whose best cut reaches it reports that cut; the others report a
    cut that is no better than their best."""
    import dyce.search.cuts

    rng = np.random.default_rng(seed)
    size, types = int(rng.integers(1, 60)), 2
    conf = np.sort(rng.choice([0.0, 0.3, 0.6, 0.9], size).astype(np.float32))[::-1].copy()
    exits = [exit_order(rng.permutation(size).astype(np.intp), conf, rng.random(size) < 0.6,
                        rng.random(size) < 0.7, block=block) for _ in range(types)]
    codes = np.full((types, exits[0].padded), -1, np.int8)
    codes[:, :size] = rng.integers(-1, 6, (types, size))
    stack = dyce.search.cuts.stack_exits(exits)
    sums = block_sums(stack.right.reshape(types, -1), block, codes, (0, 1, 2), 3)
    curves = dyce.search.cuts.CurveSet(stack, codes, sums, rng.choice([-2.0, -0.5, 1.0], (types, 3)),
                                size, 3, np.array([1.0, 2.0]), (0, 1, 2))
    lambdas = np.array([0.0, 0.5, 0.9, 1.0, 1.3])
    cut, acc, macs = curves.best(lambdas, 0.5, 4.0)
    value = (acc * size - 3) * lambdas / (size * 0.5) \
        - (macs * size - np.array([1.0, 2.0])[:, None]) * (1 - lambdas) / (size * 4.0)
    floor = value + rng.choice([-1e-3, 1e-3], value.shape)  # just below or just above the best
    got_cut, got_acc, got_macs = curves.best(lambdas, 0.5, 4.0, floor=floor)
    got = (got_acc * size - 3) * lambdas / (size * 0.5) \
        - (got_macs * size - np.array([1.0, 2.0])[:, None]) * (1 - lambdas) / (size * 4.0)
    reached = floor < value
    assert np.array_equal(got_cut[reached], cut[reached])
    assert np.all(got[~reached] <= value[~reached] + 1e-12)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), block=st.sampled_from([1, 3, 8, 64]))
def test_codes_by_sample_give_the_cuts_of_codes_in_sorted_order(seed, block):
    """A curve set reading its scanned blocks from codes by sample (circular's states) finds the
    same cuts and thresholds as one holding the codes in every exit's sorted order."""
    rng = np.random.default_rng(seed)
    size, types = int(rng.integers(1, 200)), 3
    by_sample = rng.integers(-1, 6, size).astype(np.int8)
    conf = rng.choice([0.0, 0.3, 0.6, 0.9], (types, size)).astype(np.float32)
    exits = []
    for t in range(types):
        order = np.argsort(-conf[t], kind="stable")
        exits.append(exit_order(order, conf[t][order], rng.random(size) < 0.6,
                                rng.random(size) < 0.7, block=block))
    codes = np.full((types, exits[0].padded), -1, np.int8)
    for t, exit in enumerate(exits):
        codes[t, :size] = by_sample[exit.order]
    stack = stack_exits(exits)
    sums = block_sums(stack.right.reshape(types, -1), block, codes, (0, 1, 2), 3)
    weights = rng.choice([-2.0, -0.5, 1.0], (types, 3))
    arriving = int(np.count_nonzero(by_sample >= 0))
    lambdas = np.array([0.0, 0.5, 0.9, 1.0, 1.3])
    results = []
    for sorted_codes, sample_codes in ((codes, None), (None, by_sample)):
        curves = CurveSet(stack, sorted_codes, sums, weights, arriving, 3,
                          np.array([1.0, 2.0, 4.0]), (0, 1, 2), sample_codes)
        cut, acc, macs = curves.best(lambdas, 0.5, 4.0)
        thresholds = [curves.threshold(t, cut[t]) for t in range(types)]
        results.append((cut, acc, macs, thresholds))
    for got, want in zip(results[1][:3], results[0][:3], strict=True):
        assert np.array_equal(got, want)
    for got, want in zip(results[1][3], results[0][3], strict=True):
        assert np.array_equal(got, want)


def test_a_block_size_outside_the_exact_range_is_refused():
    """Block sums are int16 and the incremental update packs per-block counts in base 2**15."""
    import pytest

    order = np.arange(4, dtype=np.intp)
    conf, flags = np.ones(4, np.float32), np.zeros(4, bool)
    for block in (0, 2**14):
        with pytest.raises(ValueError, match="block"):
            exit_order(order, conf, flags, flags, block=block)
    assert exit_order(order, conf, flags, flags, block=2**14 - 1).padded == 2**14 - 1
