"""The block-pruned cut scan equals a scan of every cut (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dyce.cuts import BlockCurve, exit_order
from dyce.evaluate import exceeds


def brute_force_best(conf, arriving, gain, rest, weights, lambdas, acc_span, macs_span,
                     base_correct, base_macs):
    """Every cut of the arriving samples: first cut of largest value, (cut, acc, macs)."""
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
            value = gained * weight_acc
            counts = [int(np.count_nonzero(rest[leaving] == r)) for r in range(len(weights))]
            used = [r for r in range(len(weights)) if np.any(rest[members] == r)] or [0]
            for r in used:
                value -= counts[r] * (weight_macs * weights[r])
            if best is None or value > best[0]:
                moved = 0.0
                for i, r in enumerate(used):
                    moved = counts[r] * weights[r] if i == 0 else moved + counts[r] * weights[r]
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
    gain = np.array(data.draw(st.lists(st.integers(-1, 1), min_size=size, max_size=size)),
                    dtype=np.int8) * arriving
    rest = np.where(arriving, np.array(data.draw(st.lists(
        st.integers(0, positions - 1), min_size=size, max_size=size)), dtype=np.int8)
        if size else np.zeros(0, np.int8), -1).astype(np.int8)
    weights = np.array(data.draw(st.lists(st.sampled_from([-3.0, -1.0, -0.5, 0.0, 0.5, 2.0]),
                                          min_size=positions, max_size=positions)))
    lambdas = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.3, 0.5, 0.77, 0.99, 1.0, 1.5]),
                                          min_size=1, max_size=6)))
    exit = exit_order(np.arange(size, dtype=np.intp), conf, np.zeros(size, bool),
                      np.zeros(size, bool), block=block)
    padded_gain = np.zeros(exit.padded, np.int8)
    padded_gain[:size] = gain
    padded_rest = np.full(exit.padded, -1, np.int8)
    padded_rest[:size] = rest
    present = tuple(r for r in range(positions) if np.any(rest == r)) or (0,)
    curve = BlockCurve(exit, padded_gain, padded_rest, present, weights[list(present)],
                       int(arriving.sum()), base_correct=3, base_macs=7.0)
    cut, acc, macs = curve.best(lambdas, acc_span=0.7, macs_span=5.0)
    expected = brute_force_best(conf, arriving, gain, rest, weights, lambdas, 0.7, 5.0, 3, 7.0)
    assert [(int(c), float(a), float(m)) for c, a, m in zip(cut, acc, macs, strict=True)] == \
        [(c, a, m) for c, a, m in expected]
    # The threshold lets exactly the chosen arriving samples leave.
    for chosen, threshold in zip(cut, curve.threshold(cut), strict=True):
        assert int(np.count_nonzero(exceeds(conf[arriving], threshold))) == chosen
