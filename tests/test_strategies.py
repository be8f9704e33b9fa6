"""Peer strategies against per-sample brute force: global threshold, MSDNet, patience."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import betaincinv

from dyce.errors import DyceError
from dyce.evaluate.strategies import (
    evaluate_patience,
    global_threshold,
    msdnet,
    msdnet_config,
    msdnet_fractions,
    msdnet_thresholds,
    patience,
    patience_exit_positions,
    run_strategy,
)
from dyce.records.format import ExitRecords
from tests.synthetic import exit_type_names, make_synthetic_macs, make_synthetic_records

# --------------------------------------------------------------------------- brute force


def brute_force(records: ExitRecords, info: dict, leave, calibration: bool = False):
    """Per-sample loop: ``leave(n)`` gives (position, exit row) of sample ``n``; all heads of
    ``enabled`` (a list of exit types or -1 per candidate position) are paid when passed."""
    num_positions = records.num_positions
    ori = info["backbone"]["ori_macs"]
    total_macs, correct = 0.0, 0
    per_position = np.zeros((num_positions, 2))  # [count, correct]
    for n in range(records.num_samples):
        position, row, enabled = leave(n)
        heads = sum(
            info["head"][enabled[q]]["macs"][q]
            for q in range(num_positions - 1)
            if enabled[q] != -1 and q <= position
        )
        base = ori if position == num_positions - 1 else info["backbone"]["macs"][position]
        total_macs += base + heads
        right = int(records.preds[row, n, 0] == records.labels[n])
        correct += right
        per_position[position] += (1, right)
    final_acc = float(np.mean(records.preds[-1, :, 0] == records.labels))
    if calibration:
        acc = sum(
            betaincinv(1 + c, 1 + m - c, 0.1) * m / records.num_samples
            for m, c in per_position if m > 0
        )
    else:
        acc = correct / records.num_samples
    return {
        "relative_macs": total_macs / records.num_samples / ori,
        "relative_acc": acc / final_acc,
        "exit_ratio": per_position[:, 0] / records.num_samples,
    }


def threshold_leave(records: ExitRecords, config):
    """``leave`` for a threshold configuration (DyCE semantics, strict >)."""
    enabled = [k for k, _ in config]

    def leave(n):
        for p, (k, t) in enumerate(config):
            if k != -1 and records.confs[p * records.num_exit_types + k, n, 0] > t:
                return p, p * records.num_exit_types + k, enabled
        return records.num_positions - 1, records.num_exits - 1, enabled

    return leave


def assert_matches(evaluation, expected):
    assert evaluation.relative_macs == pytest.approx(expected["relative_macs"], rel=1e-12)
    assert evaluation.relative_acc == pytest.approx(expected["relative_acc"], rel=1e-12)
    np.testing.assert_allclose(evaluation.exit_ratio, expected["exit_ratio"], rtol=0, atol=1e-12)


def records_from(classes: np.ndarray, confs: np.ndarray, labels: np.ndarray, num_types: int,
                 num_classes: int) -> ExitRecords:
    return ExitRecords(
        labels=labels.astype(np.int64),
        preds=classes.astype(np.int16)[:, :, None],
        confs=confs.astype(np.float32)[:, :, None],
        exit_types=exit_type_names(num_types),
        num_positions=(classes.shape[0] - 1) // num_types + 1,
        num_classes=num_classes,
    )


# --------------------------------------------------------------------------- global threshold


def test_global_threshold_sweeps_every_type_and_threshold():
    records = make_synthetic_records(200, 4, 2, 10, seed=4)
    info = make_synthetic_macs(4, 2)
    results = global_threshold(records, info, progress=False)
    assert len(results) == 2 * 101
    assert {r.exit_type for r in results} == {0, 1}
    assert [r.parameter for r in results[:3]] == [0.0, 0.01, 0.02]
    for result in results[::17]:
        assert result.parameter_name == "threshold"
        assert result.config == [[result.exit_type, result.parameter]] * 3
        assert_matches(result.evaluation, brute_force(records, info,
                                                      threshold_leave(records, result.config)))


def test_global_threshold_one_type():
    records = make_synthetic_records(50, 3, 3, 5, seed=4)
    results = global_threshold(records, make_synthetic_macs(3, 3), exit_types=[2],
                               thresholds=[0.3, 0.7], progress=False)
    assert [(r.exit_type, r.parameter) for r in results] == [(2, 0.3), (2, 0.7)]
    with pytest.raises(DyceError, match="exit_type"):
        global_threshold(records, make_synthetic_macs(3, 3), exit_types=[3], progress=False)
    with pytest.raises(DyceError, match="threshold"):
        global_threshold(records, make_synthetic_macs(3, 3), thresholds=[1.5], progress=False)


# --------------------------------------------------------------------------- MSDNet


def brute_force_leaving_counts(confs: np.ndarray, thresholds: list[float]) -> list[int]:
    """Per-sample loop: how many samples leave at each candidate exit."""
    counts = [0] * len(thresholds)
    for n in range(confs.shape[1]):
        for k, t in enumerate(thresholds):
            if confs[k, n] > t:
                counts[k] += 1
                break
    return counts


def test_msdnet_fractions_follow_q_powers():
    fractions = msdnet_fractions(0.5, 4)
    np.testing.assert_allclose(fractions, np.array([8, 4, 2, 1]) / 15)
    np.testing.assert_allclose(msdnet_fractions(1.0, 5), 0.2)


@pytest.mark.parametrize("q", [0.05, 0.5, 1.0, 1.5, 1.95])
def test_msdnet_lets_floor_n_pk_samples_leave_on_the_search_records(q):
    records = make_synthetic_records(997, 6, 2, 10, seed=7)
    info = make_synthetic_macs(6, 2)
    exit_type = 1
    config = msdnet_config(records, exit_type, q)
    rows = [p * 2 + exit_type for p in range(5)]
    counts = brute_force_leaving_counts(records.confs[rows, :, 0], [t for _, t in config])
    expected = [math.floor(997 * f) for f in msdnet_fractions(q, 6)[:-1]]
    assert counts == expected
    # Evaluated exactly, the exit ratios say the same; the final head takes the rest.
    from dyce.evaluate.exact import evaluate_config

    evaluation = evaluate_config(records, info, config)
    np.testing.assert_allclose(np.asarray(evaluation.exit_ratio) * 997,
                               expected + [997 - sum(expected)], atol=1e-9)
    assert_matches(evaluation, brute_force(records, info, threshold_leave(records, config)))


@settings(max_examples=120, deadline=None)
@given(
    st.integers(1, 40).flatmap(lambda n: st.tuples(
        st.just(n),
        st.lists(st.lists(st.sampled_from([0.0, 0.2, 0.5, 0.5, 0.9, 1.0]), min_size=n,
                          max_size=n), min_size=1, max_size=4),
        st.sampled_from([0.05, 0.4, 1.0, 1.3, 1.95]),
    ))
)
def test_msdnet_with_ties_lets_the_most_samples_leave_without_exceeding_the_count(case):
    num_samples, conf_rows, q = case
    confs = np.asarray(conf_rows, dtype=np.float32)
    fractions = msdnet_fractions(q, confs.shape[0] + 1)
    thresholds = msdnet_thresholds(confs, fractions)
    assert all(0.0 <= t <= 1.0 for t in thresholds)
    counts = brute_force_leaving_counts(confs, thresholds)
    still_in = np.ones(num_samples, dtype=bool)
    for k, t in enumerate(thresholds):
        target = math.floor(num_samples * fractions[k] + 1e-9)
        arriving = confs[k, still_in]
        # Every count a strict threshold can give the arriving samples.
        achievable = [int((arriving > v).sum()) for v in [0.0, 1.0, *arriving.tolist()]]
        assert counts[k] == max(c for c in achievable if c <= target)
        still_in &= ~(confs[k] > t)


def test_msdnet_sweeps_q_per_exit_type():
    records = make_synthetic_records(120, 3, 2, 5, seed=2)
    results = msdnet(records, make_synthetic_macs(3, 2), progress=False)
    assert len(results) == 2 * 39
    assert results[0].parameter == 0.05 and results[38].parameter == 1.95
    assert {r.parameter_name for r in results} == {"q"}


# --------------------------------------------------------------------------- patience


def definitional_patience_position(classes: list[int], patience_value: int) -> int:
    """First candidate ``j`` whose class equals the ``t`` classes before it; else the final."""
    for j in range(len(classes)):
        if j >= patience_value and len(set(classes[j - patience_value: j + 1])) == 1:
            return j
    return len(classes)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 6).flatmap(lambda positions: st.tuples(
        st.just(positions),
        st.integers(1, 3),
        st.integers(1, 12),
        st.integers(1, positions - 1) if positions > 1 else st.just(1),
        st.integers(0, 2**31 - 1),
        st.booleans(),
    ))
)
def test_patience_evaluator_equals_a_per_sample_loop(case):
    num_positions, num_types, num_samples, patience_value, seed, calibration = case
    rng = np.random.default_rng(seed)
    num_exits = (num_positions - 1) * num_types + 1
    classes = rng.integers(0, 3, (num_exits, num_samples))  # 3 classes: repeats are common
    labels = rng.integers(0, 3, num_samples)
    classes[-1, 0] = labels[0]  # the final head is right at least once (relative accuracy)
    confs = rng.uniform(0.34, 1.0, (num_exits, num_samples))
    records = records_from(classes, confs, labels, num_types, 3)
    info = make_synthetic_macs(num_positions, num_types)
    exit_type = int(rng.integers(0, num_types))
    rows = [p * num_types + exit_type for p in range(num_positions - 1)]

    def leave(n):
        position = definitional_patience_position([int(classes[r, n]) for r in rows],
                                                  patience_value)
        row = rows[position] if position < num_positions - 1 else num_exits - 1
        return position, row, [exit_type] * (num_positions - 1)

    config = {"patience": patience_value, "exit_type": exit_type}
    evaluation = evaluate_patience(records, info, config, calibration=calibration,
                                   per_sample=True)
    assert_matches(evaluation, brute_force(records, info, leave, calibration=calibration))
    positions = [leave(n)[0] for n in range(num_samples)]
    np.testing.assert_array_equal(
        patience_exit_positions(classes[rows], patience_value), positions)


def test_patience_one_leaves_at_the_second_exit_when_it_agrees_with_the_first():
    # Columns are samples; rows are candidate positions 0..3.
    classes = np.array([[1, 1, 1, 2],
                        [1, 2, 2, 0],
                        [0, 2, 2, 0],
                        [0, 0, 2, 0]])
    assert patience_exit_positions(classes, 1).tolist() == [1, 2, 2, 2]
    assert patience_exit_positions(classes, 2).tolist() == [4, 4, 3, 3]
    assert patience_exit_positions(classes, 4).tolist() == [4, 4, 4, 4]


def test_patience_sweep_and_dispatch():
    records = make_synthetic_records(200, 5, 2, 4, seed=9)
    info = make_synthetic_macs(5, 2)
    results = patience(records, info, exit_types=[1], progress=False)
    assert [r.parameter for r in results] == [1.0, 2.0, 3.0, 4.0]
    assert results[0].config == {"patience": 1, "exit_type": 1}
    # Larger patience: later exits, more MACs.
    macs = [r.evaluation.relative_macs for r in results]
    assert macs == sorted(macs)
    with pytest.raises(DyceError, match="patience"):
        patience(records, info, patiences=[0], progress=False)
    with pytest.raises(DyceError, match="exit_type"):
        evaluate_patience(records, info, {"patience": 1, "exit_type": 5})


def test_run_strategy_rejects_unknown_methods():
    records = make_synthetic_records(10, 3, 1, 3)
    with pytest.raises(DyceError, match="method"):
        run_strategy("bogus", records, make_synthetic_macs(3, 1))
