"""Risk control: valid upper bounds and the fixed-sequence (Learn-then-Test) choice."""

from __future__ import annotations

import numpy as np
import pytest

from dyce.errors import DyceError
from dyce.records.format import ExitRecords
from dyce.runtime.risk import (
    choose_by_risk,
    clopper_pearson_upper,
    hoeffding_bentkus_p_value,
    hoeffding_bentkus_upper,
    risk_losses,
    upper_bound,
)


def _records(labels: list[int], final_preds: list[int]) -> ExitRecords:
    n = len(labels)
    preds = np.zeros((2, n, 1), dtype=np.int16)
    preds[-1, :, 0] = final_preds
    return ExitRecords(
        labels=np.asarray(labels), preds=preds, confs=np.ones((2, n, 1), np.float32),
        exit_types=("mlp1x1000",), num_positions=2, num_classes=3,
    )


def test_loss_counts_only_samples_the_final_head_gets_right_and_the_config_breaks() -> None:
    records = _records(labels=[0, 1, 2, 0], final_preds=[0, 1, 0, 1])
    # sample 0: final right, config right -> 0; sample 1: final right, config wrong -> 1;
    # sample 2: final wrong, config wrong -> 0; sample 3: final wrong, config right -> 0.
    losses = risk_losses(records, np.array([[0, 2, 1, 0]]))
    assert losses.tolist() == [[False, True, False, False]]


def test_clopper_pearson_zero_losses_has_the_closed_form() -> None:
    for n in (10, 100, 1000):
        assert clopper_pearson_upper(0, n, 0.1) == pytest.approx(1 - 0.1 ** (1 / n), rel=1e-9)
    assert clopper_pearson_upper(7, 7, 0.1) == 1.0


@pytest.mark.parametrize("bound", ["clopper-pearson", "hoeffding-bentkus"])
def test_upper_bounds_cover_the_true_risk_at_least_one_minus_delta_of_the_time(bound: str) -> None:
    rng = np.random.default_rng(0)
    true_risk, delta, n, trials = 0.08, 0.1, 200, 400
    draws = rng.random((trials, n)) < true_risk
    bounds = np.array([upper_bound(draw, delta, bound) for draw in draws])
    assert np.all(bounds >= draws.mean(axis=1))
    misses = float(np.mean(bounds < true_risk))
    assert misses <= delta  # binomial noise of 400 trials is ~0.015 around a true miss rate < 0.1


def test_hoeffding_bentkus_bound_is_where_its_p_value_reaches_delta() -> None:
    for risk, n in [(0.0, 50), (0.05, 100), (0.2, 1000)]:
        value = hoeffding_bentkus_upper(risk, n, 0.05)
        assert hoeffding_bentkus_p_value(risk, n, value) <= 0.05
        assert hoeffding_bentkus_p_value(risk, n, value - 1e-6) > 0.05
        # Hoeffding-Bentkus is valid for any bounded loss, so never tighter than the exact
        # binomial bound on binary losses.
        assert value >= clopper_pearson_upper(round(risk * n), n, 0.05) - 1e-9


def _losses(rates: list[float], n: int = 1000) -> np.ndarray:
    """Binary losses with exactly ``round(rate * n)`` ones per configuration."""
    out = np.zeros((len(rates), n), dtype=bool)
    for row, rate in enumerate(rates):
        out[row, : round(rate * n)] = True
    return out


def test_choice_is_the_cheapest_configuration_passing_in_cost_order() -> None:
    # costs listed out of order; by cost (desc): #2 (0.9), #0 (0.7), #3 (0.5), #1 (0.3)
    losses = _losses([0.01, 0.2, 0.0, 0.02])
    choice = choose_by_risk(losses, [0.7, 0.3, 0.9, 0.5], epsilon=0.05, delta=0.1)
    assert choice.index == 3
    assert [t.index for t in choice.tests] == [2, 0, 3, 1]
    assert [t.passed for t in choice.tests] == [True, True, True, False]
    assert choice.upper_bound == pytest.approx(clopper_pearson_upper(20, 1000, 0.1))
    assert choice.upper_bound <= 0.05
    assert choice.empirical_loss == pytest.approx(0.02)
    assert "clopper-pearson" in choice.summary()


def test_testing_stops_at_the_first_failure_even_if_a_cheaper_one_would_pass() -> None:
    losses = _losses([0.0, 0.3, 0.0])
    choice = choose_by_risk(losses, [0.9, 0.6, 0.3], epsilon=0.05, delta=0.1)
    assert choice.index == 0
    assert len(choice.tests) == 2


def test_no_passing_configuration_falls_back_to_the_original_model() -> None:
    choice = choose_by_risk(_losses([0.3, 0.4]), [0.8, 0.5], epsilon=0.05, delta=0.1,
                            bound="hoeffding-bentkus")
    assert choice.index is None
    assert choice.upper_bound == 0.0
    assert "original model" in choice.summary()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epsilon": 0.0, "delta": 0.1}, "epsilon"),
        ({"epsilon": 0.1, "delta": 1.5}, "delta"),
        ({"epsilon": 0.1, "delta": 0.1, "bound": "chernoff"}, "bound"),
    ],
)
def test_bad_parameters_raise_dyce_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(DyceError, match=field):
        choose_by_risk(_losses([0.0]), [0.5], **kwargs)
