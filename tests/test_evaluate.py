"""The exact evaluator: vectorised figures equal a per-sample brute force, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import betaincinv

from dyce.errors import DyceError
from dyce.evaluate.exact import (
    Evaluation,
    brute_force_evaluate,
    check_config,
    evaluate_config,
    evaluation_from_exits,
)
from dyce.macs.info import MacsInfo, load_macs_info
from dyce.records.format import ExitRecords

# A small set of confidences so that ties (between samples, and with thresholds) are frequent.
CONF_VALUES = np.array([0.0, 0.1, 0.25, 0.5, 0.5000001, 0.75, 0.9, 1.0], dtype=np.float32)
MAC_VALUES = [0, 1, 3, 250, 1000, 0.1, 12.5, 4_100_000_000, 1e9 + 0.3]


def make_records(labels, top1_preds, top1_confs, num_positions, num_exit_types, num_classes,
                 topk=1) -> ExitRecords:
    """Records from top-1 arrays ``(E, N)``; lower ranks (if any) get lower confidences."""
    top1_preds = np.asarray(top1_preds, dtype=np.int16)
    top1_confs = np.asarray(top1_confs, dtype=np.float32)
    num_exits, num_samples = top1_preds.shape
    preds = np.empty((num_exits, num_samples, topk), dtype=np.int16)
    confs = np.empty((num_exits, num_samples, topk), dtype=np.float32)
    for rank in range(topk):
        preds[:, :, rank] = (top1_preds + rank) % num_classes
        confs[:, :, rank] = top1_confs / (rank + 1)
    return ExitRecords(
        labels=np.asarray(labels, dtype=np.int64), preds=preds, confs=confs,
        exit_types=tuple(f"t{k}" for k in range(num_exit_types)),
        num_positions=num_positions, num_classes=num_classes,
    )


def make_macs(head, backbone, ori) -> MacsInfo:
    return load_macs_info({
        "head": [{"name": f"t{k}", "macs": list(row)} for k, row in enumerate(head)],
        "backbone": {"name": "b", "macs": list(backbone), "ori_macs": ori},
    })


@st.composite
def tiny_problems(draw, max_samples=40, max_positions=5, max_types=3, sorted_backbone=False):
    """(records, macs) with N 1..40, P 2..5, T 1..3, 2..5 classes, top-k 1..3."""
    num_samples = draw(st.integers(1, max_samples))
    num_positions = draw(st.integers(2, max_positions))
    num_types = draw(st.integers(1, max_types))
    num_classes = draw(st.integers(2, 5))
    topk = draw(st.integers(1, min(3, num_classes)))
    num_exits = (num_positions - 1) * num_types + 1
    labels = draw(hnp.arrays(np.int64, num_samples, elements=st.integers(0, num_classes - 1)))
    preds = draw(hnp.arrays(np.int16, (num_exits, num_samples),
                            elements=st.integers(0, num_classes - 1)))
    conf_index = draw(hnp.arrays(np.int64, (num_exits, num_samples),
                                 elements=st.integers(0, len(CONF_VALUES) - 1)))
    records = make_records(labels, preds, CONF_VALUES[conf_index], num_positions, num_types,
                           num_classes, topk)
    mac = st.sampled_from(MAC_VALUES)
    head = [[draw(mac) for _ in range(num_positions - 1)] + [0] for _ in range(num_types)]
    backbone = [draw(mac) for _ in range(num_positions)]
    if sorted_backbone:
        backbone.sort()
    ori = draw(st.sampled_from([backbone[-1] or 1, 7, 5_000_000_000]))
    return records, make_macs(head, backbone, ori)


@st.composite
def configs(draw, records: ExitRecords):
    """Configurations mixing no-exit, thresholds 0 and 1, exact confidence values and others."""
    threshold = st.one_of(
        st.sampled_from([0.0, 1.0]),
        st.sampled_from([float(v) for v in CONF_VALUES]),
        st.floats(0.0, 1.0),
    )
    return [[draw(st.integers(-1, records.num_exit_types - 1)), draw(threshold)]
            for _ in range(records.num_positions - 1)]


def assert_same(fast: Evaluation, slow: Evaluation) -> None:
    """Every figure bit-identical (NaN equal to NaN), per-sample arrays equal."""
    for name in ("relative_macs", "raw_macs", "relative_acc", "raw_acc"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert (math.isnan(a) and math.isnan(b)) or a == b, (name, a, b)
    assert fast.exit_ratio == slow.exit_ratio
    assert fast.num_samples == slow.num_samples
    assert fast.calibrated == slow.calibrated
    if fast.exit_position is not None or slow.exit_position is not None:
        np.testing.assert_array_equal(fast.exit_position, slow.exit_position)
        np.testing.assert_array_equal(fast.prediction, slow.prediction)
        assert fast.exit_position.dtype == np.int16


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), calibration=st.booleans())
def test_evaluate_config_equals_brute_force(data, calibration):
    records, macs = data.draw(tiny_problems())
    config = data.draw(configs(records))
    fast = evaluate_config(records, macs, config, calibration=calibration, per_sample=True)
    slow = brute_force_evaluate(records, macs, config, calibration=calibration, per_sample=True)
    assert_same(fast, slow)
    assert sum(fast.exit_ratio) == pytest.approx(1.0)
    # The per-sample fates give back the same figures.
    again = evaluation_from_exits(records, macs, config, fast.exit_position,
                                  calibration=calibration)
    assert_same(again, evaluate_config(records, macs, config, calibration=calibration))


@settings(max_examples=40, deadline=None)
@given(problem=tiny_problems())
def test_special_configurations_equal_brute_force(problem):
    records, macs = problem
    num_positions = records.num_positions
    everything_first = [[0, 0.0]] + [[-1, 1.0]] * (num_positions - 2)
    every_type_everywhere = [[k % records.num_exit_types, 0.5] for k in range(num_positions - 1)]
    for config in ([[-1, 1.0]] * (num_positions - 1), everything_first, every_type_everywhere,
                   [[0, 1.0]] * (num_positions - 1)):
        for calibration in (False, True):
            assert_same(evaluate_config(records, macs, config, calibration=calibration),
                        brute_force_evaluate(records, macs, config, calibration=calibration))


def hand_problem():
    """4 samples, 3 positions (2 candidates + final), 2 exit types, 3 classes."""
    labels = [0, 1, 2, 0]
    # rows: (p0,t0), (p0,t1), (p1,t0), (p1,t1), final
    preds = [[0, 0, 2, 1], [0, 1, 0, 0], [0, 1, 2, 2], [1, 1, 1, 1], [0, 1, 1, 0]]
    confs = [[0.9, 0.3, 0.6, 0.2], [0.5, 0.5, 0.5, 0.5], [0.1, 0.95, 0.7, 0.7],
             [1.0, 1.0, 1.0, 1.0], [0.99, 0.99, 0.99, 0.99]]
    records = make_records(labels, preds, confs, 3, 2, 3)
    macs = make_macs(head=[[10, 20, 0], [100, 200, 0]], backbone=[1000, 2000, 3000], ori=3000)
    return records, macs


def test_hand_computed_example():
    records, macs = hand_problem()
    config = [[0, 0.5], [0, 0.75]]
    evaluation = evaluate_config(records, macs, config, per_sample=True)
    # sample 0 leaves at p0 (0.9 > 0.5, right); sample 2 at p0 (0.6, pred 2, right);
    # sample 1 leaves at p1 (0.95 > 0.75, pred 1, right); sample 3 reaches the final head (right).
    np.testing.assert_array_equal(evaluation.exit_position, [0, 1, 0, 2])
    np.testing.assert_array_equal(evaluation.prediction, [0, 1, 2, 0])
    assert evaluation.exit_ratio == (0.5, 0.25, 0.25)
    # MACs: p0 → 1000 + 10; p1 → 2000 + 10 + 20; end → 3000 + 10 + 20.
    expected_macs = (2 * 1010 + 2030 + 3030) / 4
    assert evaluation.raw_macs == expected_macs
    assert evaluation.relative_macs == expected_macs / 3000
    assert evaluation.raw_acc == 1.0
    assert evaluation.relative_acc == 1.0 / 0.75  # the final head alone gets 3 of 4 right
    assert evaluation.num_samples == 4


def test_threshold_equal_to_confidence_does_not_leave_and_comparison_is_float64():
    records, macs = hand_problem()
    # 0.9 > 0.9 is false: nobody leaves at p0 with type 0 at threshold 0.9 (float32(0.9) < 0.9).
    at_value = evaluate_config(records, macs, [[0, float(np.float32(0.9))], [-1, 1.0]])
    assert at_value.exit_ratio[0] == 0.0
    # float32(0.6) = 0.60000002384 > 0.6 in float64 (a float32 comparison would say no).
    assert float(np.float32(0.6)) > 0.6
    above = evaluate_config(records, macs, [[0, 0.6], [-1, 1.0]], per_sample=True)
    np.testing.assert_array_equal(above.exit_position, [0, 2, 0, 2])
    # Threshold 1 keeps everyone, even confidences of exactly 1.0.
    assert evaluate_config(records, macs, [[1, 1.0], [1, 1.0]]).exit_ratio == (0.0, 0.0, 1.0)


def test_disabled_positions_cost_nothing_and_enabled_heads_are_paid_by_everyone_passing():
    records, macs = hand_problem()
    empty = evaluate_config(records, macs, [[-1, 1.0], [-1, 1.0]])
    assert empty.relative_macs == 1.0 and empty.relative_acc == 1.0 and empty.raw_acc == 0.75
    # Type 1 at p1 with threshold 1: nobody leaves, but all pay its 200 MACs.
    passing = evaluate_config(records, macs, [[-1, 1.0], [1, 1.0]])
    assert passing.raw_macs == 3200 and passing.raw_acc == 0.75


def test_calibrated_accuracy_by_hand():
    records, macs = hand_problem()
    evaluation = evaluate_config(records, macs, [[0, 0.5], [0, 0.75]], calibration=True)
    # p0: 2 of 2 right, p1: 1 of 1, final: 1 of 1.
    expected = (betaincinv(3, 1, 0.1) * 0.5 + betaincinv(2, 1, 0.1) * 0.25
                + betaincinv(2, 1, 0.1) * 0.25)
    assert evaluation.raw_acc == pytest.approx(expected, rel=1e-15)
    assert evaluation.raw_acc < 1.0  # conservative
    assert evaluation.relative_acc == pytest.approx(expected / 0.75, rel=1e-15)
    assert evaluation.calibrated


def test_large_records_agree_with_brute_force():
    from tests.synthetic import make_synthetic_macs, make_synthetic_records

    records = make_synthetic_records(3000, 6, 3, 50, topk=2, seed=3)
    macs = make_synthetic_macs(6, 3)
    config = [[0, 0.7], [-1, 1.0], [2, 0.55], [1, 0.8], [2, 0.6]]
    for calibration in (False, True):
        assert_same(evaluate_config(records, macs, config, calibration=calibration, per_sample=True),
                    brute_force_evaluate(records, macs, config, calibration=calibration,
                                         per_sample=True))


@pytest.mark.parametrize("config", [
    [[0, 0.5]],  # too short
    [[0, 0.5], [0, 0.5], [0, 0.5]],  # too long
    [[2, 0.5], [0, 0.5]],  # exit type out of range
    [[-2, 0.5], [0, 0.5]],
    [[0.5, 0.5], [0, 0.5]],  # not a whole number
    [[True, 0.5], [0, 0.5]],
    [[0, 1.5], [0, 0.5]],  # threshold out of range
    [[0, -0.1], [0, 0.5]],
    [[0, float("nan")], [0, 0.5]],
    [[0, "0.5"], [0, 0.5]],
    [[0], [0, 0.5]],
    "[[0, 0.5], [0, 0.5]]",
])
def test_bad_configuration_is_rejected_naming_the_field(config):
    records, macs = hand_problem()
    for evaluator in (evaluate_config, brute_force_evaluate):
        with pytest.raises(DyceError) as error:
            evaluator(records, macs, config)
        assert error.value.field == "config"
        assert "config" in str(error.value)


def test_check_config_names_the_given_field_and_file():
    with pytest.raises(DyceError) as error:
        check_config([[0, 1.5]], 2, 1, field="config (row 3)", path="front.parquet")
    assert error.value.field == "config (row 3)"
    assert error.value.path == "front.parquet"
    assert str(error.value) == ("front.parquet: field 'config (row 3)': entry 0: threshold 1.5 "
                                "is not in [0, 1]")


def test_macs_of_another_model_is_rejected():
    records, _ = hand_problem()
    other = make_macs(head=[[1, 0]], backbone=[1, 2], ori=2)
    with pytest.raises(DyceError) as error:
        evaluate_config(records, other, [[0, 0.5], [0, 0.5]])
    assert error.value.field in {"num_positions", "exit_types"}


def test_exit_positions_at_disabled_positions_are_rejected():
    records, macs = hand_problem()
    with pytest.raises(DyceError) as error:
        evaluation_from_exits(records, macs, [[-1, 1.0], [0, 0.5]], np.array([0, 1, 2, 2]))
    assert error.value.field == "exit_position"
