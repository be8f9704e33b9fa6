"""DyCE searches: exact thresholds, local optimality, reproducible figures, λ handling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dyce.errors import DyceError
from dyce.evaluate.exact import check_inputs, evaluate_config
from dyce.search import CostScale, cost_scale, empty_config, evaluation_cost, search_configs
from dyce.search.calibrated import CalibratedCurve
from dyce.search.circular_reference import circular_by_rounds
from dyce.search.context import SearchContext
from tests.synthetic import make_synthetic_macs, make_synthetic_records
from tests.test_evaluate import assert_same, make_macs, make_records, tiny_problems

# Each applied circular change lowers the cost, so hitting the round cap means a bug.
pytestmark = pytest.mark.filterwarnings("error:circular search stopped")

LAMBDAS = [0.0, 0.3, 0.5, 0.77, 0.9, 1.0]
TOLERANCE = 1e-9
SEARCH_SETTINGS = settings(max_examples=30, deadline=None,
                           suppress_health_check=[HealthCheck.too_slow])


def candidate_thresholds(records, position, exit_type):
    """Every threshold that gives a distinct partition: 0, 1 and each confidence value."""
    confs = records.top1_confs[records.exit_index(position, exit_type)].astype(np.float64)
    return sorted({0.0, 1.0, *confs.tolist()})


def config_cost(records, macs, config, lambda_, scale, calibration):
    evaluation = evaluate_config(records, macs, config, calibration=calibration)
    return evaluation_cost(evaluation, lambda_, scale)


def options(records, position):
    """Every (exit type, threshold) a position can take, "none" included."""
    yield -1, 1.0
    for exit_type in range(records.num_exit_types):
        for threshold in candidate_thresholds(records, position, exit_type):
            yield exit_type, threshold


def check_figures_reproduce(records, macs, results, calibration):
    """The figures a search reports are exactly those of its configuration."""
    scale = cost_scale(records, macs)
    for result in results:
        evaluation = evaluate_config(records, macs, result.config, calibration=calibration)
        assert_same(result.evaluation, evaluation)
        assert result.cost == pytest.approx(evaluation_cost(evaluation, result.lambda_, scale),
                                            abs=TOLERANCE)


@SEARCH_SETTINGS
@given(problem=tiny_problems(max_samples=25, max_positions=4), calibration=st.booleans(),
       normalize=st.booleans())
def test_onepass_takes_the_exact_best_option_at_every_step(problem, calibration, normalize):
    records, macs = problem
    results = search_configs(records, macs, "onepass", LAMBDAS, normalize=normalize,
                             calibration=calibration, progress=False)
    scale = cost_scale(records, macs, normalize=normalize)
    for result in results:
        assert [r.lambda_ for r in results] == LAMBDAS
        for position, chosen in enumerate(result.config):
            prefix = result.config[:position]
            rest = empty_config(records.num_positions)[position + 1:]
            costs = {
                option: config_cost(records, macs, prefix + [list(option)] + rest,
                                    result.lambda_, scale, calibration)
                for option in options(records, position)
            }
            chosen_cost = config_cost(records, macs, prefix + [chosen] + rest, result.lambda_,
                                      scale, calibration)
            assert chosen_cost <= min(costs.values()) + TOLERANCE
            if chosen[0] >= 0:  # "none" wins ties
                assert costs[(-1, 1.0)] > chosen_cost - TOLERANCE
    if normalize:
        check_figures_reproduce(records, macs, results, calibration)


@SEARCH_SETTINGS
@given(problem=tiny_problems(max_samples=25, max_positions=4), calibration=st.booleans())
def test_circular_ends_in_a_local_optimum(problem, calibration):
    records, macs = problem
    results = search_configs(records, macs, "circular", LAMBDAS, calibration=calibration,
                             progress=False)
    scale = cost_scale(records, macs)
    for result in results:
        final_cost = config_cost(records, macs, result.config, result.lambda_, scale, calibration)
        for position in range(records.num_positions - 1):
            for option in options(records, position):
                changed = [list(c) for c in result.config]
                changed[position] = list(option)
                assert (config_cost(records, macs, changed, result.lambda_, scale, calibration)
                        >= final_cost - TOLERANCE), (result.lambda_, position, option)
    check_figures_reproduce(records, macs, results, calibration)


@SEARCH_SETTINGS
@given(problem=tiny_problems(max_samples=30), method=st.sampled_from(["onepass", "circular"]))
def test_sharing_work_across_lambdas_changes_nothing(problem, method):
    records, macs = problem
    together = search_configs(records, macs, method, LAMBDAS, progress=False)
    for lambda_, result in zip(LAMBDAS, together, strict=True):
        alone = search_configs(records, macs, method, [lambda_], progress=False)[0]
        assert alone.config == result.config
        assert alone.evaluation == result.evaluation
    again = search_configs(records, macs, method, LAMBDAS, progress=False)
    assert [r.config for r in again] == [r.config for r in together]


@SEARCH_SETTINGS
@given(problem=tiny_problems(max_samples=30, sorted_backbone=True),
       method=st.sampled_from(["onepass", "circular"]))
def test_lambda_one_keeps_at_least_the_final_head_accuracy(problem, method):
    records, macs = problem
    result = search_configs(records, macs, method, [1.0], progress=False)[0]
    final_accuracy = records.final_accuracy
    assert result.evaluation.raw_acc >= final_accuracy
    # Never worse than the empty configuration, for any λ.
    scale = cost_scale(records, macs)
    for result in search_configs(records, macs, method, LAMBDAS, progress=False):
        empty = config_cost(records, macs, empty_config(records.num_positions), result.lambda_,
                            scale, False)
        assert result.cost <= empty + TOLERANCE


def test_lambda_one_normalised_gives_the_final_head_accuracy_when_exits_never_beat_it():
    from tests.synthetic import make_synthetic_macs, make_synthetic_records

    records = make_synthetic_records(400, 4, 2, 10, seed=5)
    records.preds[-1, :, 0] = records.labels  # the final head is always right
    macs = make_synthetic_macs(4, 2)
    for method in ("onepass", "circular"):
        result = search_configs(records, macs, method, [1.0], progress=False)[0]
        assert result.evaluation.raw_acc == records.final_accuracy == 1.0
        assert result.evaluation.relative_acc == 1.0
        # Every exit kept at λ = 1 lets out only samples it gets right.
        check = evaluate_config(records, macs, result.config, per_sample=True)
        np.testing.assert_array_equal(check.prediction, records.labels)
        # Exits can only tie with the final head here, and ties keep "no exit".
        assert result.config == empty_config(records.num_positions)


def synthetic(num_samples=3000, seed=0):
    from tests.synthetic import make_synthetic_macs, make_synthetic_records

    return (make_synthetic_records(num_samples, 6, 3, 100, seed=seed),
            make_synthetic_macs(6, 3))


@pytest.mark.parametrize("method", ["onepass", "circular", "samethres"])
@pytest.mark.parametrize("calibration", [False, True])
def test_searched_figures_equal_a_re_evaluation_on_realistic_records(method, calibration):
    records, macs = synthetic(800 if calibration else 3000)  # calibration is for small data
    lambdas = np.linspace(0.5, 1.0, 11)
    results = search_configs(records, macs, method, lambdas, calibration=calibration,
                             progress=False)
    assert [r.method for r in results] == [method] * 11
    check_figures_reproduce(records, macs, results, calibration)
    # More weight on accuracy never buys a less accurate configuration in onepass/circular
    # at the extremes: λ = 1 is at least as accurate as λ = 0.5.
    if method != "samethres":
        assert results[-1].evaluation.raw_acc >= results[0].evaluation.raw_acc
        assert results[-1].evaluation.raw_macs >= results[0].evaluation.raw_macs
    for result in results:
        assert all(isinstance(k, int) and isinstance(t, float) for k, t in result.config)
        assert all(0.0 <= t <= 1.0 for _k, t in result.config)


def test_circular_is_a_local_optimum_on_realistic_records():
    records, macs = synthetic(1500, seed=4)
    scale = cost_scale(records, macs)
    for result in search_configs(records, macs, "circular", [0.6, 0.9], progress=False):
        for position in range(records.num_positions - 1):
            for exit_type in [-1, *range(records.num_exit_types)]:
                thresholds = [1.0] if exit_type < 0 else [
                    0.0, 1.0, *candidate_thresholds(records, position, exit_type)[::15]]
                for threshold in thresholds:
                    changed = [list(c) for c in result.config]
                    changed[position] = [exit_type, threshold]
                    assert (config_cost(records, macs, changed, result.lambda_, scale, False)
                            >= result.cost - TOLERANCE)


def test_circular_is_never_worse_than_where_it_starts_and_beats_samethres():
    records, macs = synthetic(2000, seed=1)
    lambdas = [0.6, 0.8, 0.95]
    circular = search_configs(records, macs, "circular", lambdas, progress=False)
    onepass = search_configs(records, macs, "onepass", lambdas, progress=False)
    same = search_configs(records, macs, "samethres", lambdas, progress=False)
    for c, o, s in zip(circular, onepass, same, strict=True):
        assert c.cost <= s.cost + TOLERANCE
        assert o.cost <= s.cost + TOLERANCE


def test_samethres_uses_lambda_as_threshold_clipped():
    records, macs = synthetic(200)
    with pytest.warns(UserWarning, match="lambda above 1"):
        results = search_configs(records, macs, "samethres", [0.3, 1.2], exit_type=2)
    assert results[0].config == [[2, 0.3]] * 5
    assert results[1].config == [[2, 1.0]] * 5
    assert results[1].evaluation.exit_ratio[-1] == 1.0
    with pytest.raises(DyceError) as error:
        search_configs(records, macs, "samethres", [0.5], exit_type=3)
    assert error.value.field == "exit_type"


@pytest.mark.parametrize("bad", [[-0.1], [float("nan")], [float("inf")], ["0.5"], [True], 0.5])
def test_bad_lambda_is_rejected(bad):
    records, macs = synthetic(100)
    with pytest.raises(DyceError) as error:
        search_configs(records, macs, "onepass", bad, progress=False)
    assert error.value.field == "lambda"


def test_lambda_above_one_warns_and_still_finds_the_exact_optimum():
    records, macs = synthetic(300)
    with pytest.warns(UserWarning, match="lambda above 1"):
        results = search_configs(records, macs, "onepass", [1.05, 1.5], progress=False)
    scale = cost_scale(records, macs)
    for result in results:  # first step exact versus every option
        rest = empty_config(records.num_positions)[1:]
        best = min(config_cost(records, macs, [list(o)] + rest, result.lambda_, scale, False)
                   for o in options(records, 0))
        chosen = config_cost(records, macs, [result.config[0]] + rest, result.lambda_, scale,
                             False)
        assert chosen <= best + TOLERANCE


def test_unknown_method_and_foreign_macs_are_rejected():
    records, macs = synthetic(100)
    with pytest.raises(DyceError) as error:
        search_configs(records, macs, "greedy", [0.5], progress=False)
    assert error.value.field == "method"
    other = make_macs(head=[[1, 0]], backbone=[1, 2], ori=2)
    with pytest.raises(DyceError):
        search_configs(records, other, "onepass", [0.5], progress=False)


def test_confidences_outside_zero_one_are_rejected():
    records = make_records([0, 1], [[0, 1], [0, 1]], [[0.5, 1.5], [0.2, 0.3]], 2, 1, 2)
    macs = make_macs(head=[[1, 0]], backbone=[1, 2], ori=2)
    with pytest.raises(DyceError) as error:
        search_configs(records, macs, "onepass", [0.5], progress=False)
    assert error.value.field == "confs"


def test_midpoint_thresholds_and_all_or_none_cuts():
    # One candidate position, one type: confidences 0.2, 0.4, 0.4, 0.8, the exit is right on the
    # two 0.4 samples only, the final head right on the others; the exit costs nothing.
    labels = [0, 0, 0, 0]
    preds = [[1, 0, 0, 1], [0, 1, 1, 0]]
    confs = [[0.2, 0.4, 0.4, 0.8], [0.9, 0.9, 0.9, 0.9]]
    records = make_records(labels, preds, confs, 2, 1, 2)
    macs = make_macs(head=[[0, 0]], backbone=[0, 100], ori=100)
    # Cuts: nobody leaves (2/4 right), 0.8 leaves (1/4), 0.8 and both 0.4 leave (3/4), all
    # leave (2/4). λ = 1 (accuracy only) takes the third: threshold midway between 0.2 and 0.4.
    result = search_configs(records, macs, "onepass", [1.0], progress=False)[0]
    assert result.config == [[0, (float(np.float32(0.2)) + float(np.float32(0.4))) / 2]]
    assert result.evaluation.raw_acc == 0.75
    # λ = 0 (MACs only): everyone leaves, threshold 0.
    result = search_configs(records, macs, "onepass", [0.0], progress=False)[0]
    assert result.config == [[0, 0.0]]
    assert result.evaluation.exit_ratio == (1.0, 0.0)


def test_equally_good_cuts_keep_the_highest_threshold():
    # Exit right on 0.8 and 0.4, wrong on 0.6 and 0.2; final head always wrong. At λ = 1 letting
    # 3 or 4 samples leave both give 2/4: the higher threshold (3 leave) wins.
    labels = [0, 0, 0, 0]
    preds = [[1, 0, 1, 0], [1, 1, 1, 1]]
    confs = [[0.2, 0.4, 0.6, 0.8], [0.9, 0.9, 0.9, 0.9]]
    records = make_records(labels, preds, confs, 2, 1, 2)
    macs = make_macs(head=[[0, 0]], backbone=[0, 100], ori=100)
    for method in ("onepass", "circular"):
        result = search_configs(records, macs, method, [1.0], progress=False)[0]
        assert result.config == [[0, (float(np.float32(0.2)) + float(np.float32(0.4))) / 2]]
        assert result.evaluation.exit_ratio == (0.75, 0.25)


@settings(max_examples=200, deadline=None)
@given(accuracy=st.lists(st.integers(0, 8), min_size=1, max_size=30),
       direction=st.sampled_from([-1, 0, 1]), data=st.data())
def test_divide_and_conquer_over_lambdas_finds_each_first_cheapest_cut(accuracy, direction,
                                                                         data):
    count = len(accuracy)
    if direction == 0:  # MACs in any order
        macs = np.array(data.draw(st.lists(st.integers(0, 8), min_size=count, max_size=count)))
    else:  # strictly monotone MACs along the cuts
        steps = np.array(data.draw(st.lists(st.integers(1, 3), min_size=count, max_size=count)))
        macs = np.cumsum(steps) * direction
    lambdas = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.625, 0.75, 1.0,
                                                            1.5, 3.0]), min_size=1,
                                          max_size=9)))
    # Binary fractions: every cost is exact, so "first cheapest" is unambiguous.
    invalid = np.array(data.draw(st.lists(st.integers(1, count - 1), unique=True,
                                          max_size=count // 2)) if count > 1 else [],
                       dtype=np.int64)
    curve = CalibratedCurve(invalid=invalid, count=count - 1, num_samples=1,
                            calibrated_acc=np.array(accuracy) / 8, base_macs=0.0, step=0.0,
                            moved=macs / 8.0, direction=direction,
                            conf=np.zeros(count, np.float32), positions=None)
    scale = CostScale(0.0, 1.0, 0.0, 1.0)
    best, best_cost = curve.best(lambdas, scale)
    allowed = np.setdiff1d(np.arange(count), invalid)  # invalid cuts are never chosen
    acc, macs = np.array(accuracy) / 8, macs / 8.0
    for lambda_, index, value in zip(lambdas, best, best_cost, strict=True):
        costs = lambda_ * (1 - acc) + (1 - lambda_) * macs
        assert index == allowed[np.argmin(costs[allowed])]
        assert value == costs[allowed].min()


def test_empty_config():
    assert empty_config(4) == [[-1, 1.0], [-1, 1.0], [-1, 1.0]]


@pytest.mark.slow
def test_onepass_on_a_larger_record_matches_an_exhaustive_first_step():
    records, macs = synthetic(20000, seed=2)
    scale = cost_scale(records, macs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = search_configs(records, macs, "onepass", [0.7, 0.95], progress=False)
    rest = empty_config(records.num_positions)[1:]
    for result in results:
        evaluations = []
        for exit_type in range(records.num_exit_types):
            confs = np.unique(records.top1_confs[records.exit_index(0, exit_type)])
            # every 50th distinct value: a coarse but exact scan (thresholds at confidences)
            for threshold in [0.0, 1.0, *confs[::50].astype(np.float64).tolist()]:
                evaluations.append(config_cost(records, macs, [[exit_type, threshold]] + rest,
                                               result.lambda_, scale, False))
        chosen = config_cost(records, macs, [result.config[0]] + rest, result.lambda_, scale,
                             False)
        assert chosen <= min(evaluations) + TOLERANCE


@pytest.mark.parametrize("method", ["onepass", "circular", "samethres"])
def test_no_lambdas_and_records_without_candidate_positions(method):
    from tests.synthetic import make_synthetic_macs, make_synthetic_records

    records, macs = synthetic(50)
    assert search_configs(records, macs, method, [], progress=False) == []
    final_only = make_synthetic_records(50, 1, 2, 5)
    result = search_configs(final_only, make_synthetic_macs(1, 2), method, [0.7],
                            progress=False)[0]
    assert result.config == [] and result.evaluation.relative_macs == 1.0
    assert result.evaluation.relative_acc == 1.0


@pytest.mark.parametrize("method", ["onepass", "circular"])
def test_results_do_not_depend_on_the_order_of_the_samples(method):
    # The search relabels samples internally (by summed confidence); reversing and shuffling
    # the records must give the same configurations and bit-identical figures (integer MACs:
    # every MACs sum is exact, so no rounding depends on the order either).
    import dataclasses

    records, macs = synthetic(3000, seed=5)
    lambdas = np.linspace(0.5, 1.0, 11).tolist()
    expected = search_configs(records, macs, method, lambdas, progress=False)
    rng = np.random.default_rng(0)
    for permutation in (np.arange(records.num_samples)[::-1],
                        rng.permutation(records.num_samples)):
        shuffled = dataclasses.replace(records, labels=records.labels[permutation],
                                       preds=records.preds[:, permutation],
                                       confs=records.confs[:, permutation], sample_ids=None)
        results = search_configs(shuffled, macs, method, lambdas, progress=False)
        for got, want in zip(results, expected, strict=True):
            assert got.config == want.config
            assert got.evaluation == want.evaluation
            assert got.cost == want.cost


@pytest.mark.parametrize("method", ["onepass", "circular"])
def test_threads_do_not_change_results(method):
    """Curves computed in worker threads give exactly the single-thread search."""
    records = make_synthetic_records(3000, 5, 3, 10, seed=7)
    macs = make_synthetic_macs(5, 3)
    lambdas = list(np.linspace(0.5, 1.0, 21))
    single = search_configs(records, macs, method, lambdas, progress=False, threads=1)
    threaded = search_configs(records, macs, method, lambdas, progress=False, threads=3)
    for one, many in zip(single, threaded, strict=True):
        assert one.config == many.config
        assert one.evaluation == many.evaluation
        assert one.cost == many.cost


def test_threads_must_be_positive():
    records = make_synthetic_records(50, 3, 2, 4, seed=1)
    with pytest.raises(DyceError, match="threads"):
        search_configs(records, make_synthetic_macs(3, 2), "onepass", [0.9], threads=0)


def test_default_threads_follow_the_jobs_thread_count(monkeypatch):
    """A Snakemake/Slurm job's declared threads (OMP_NUM_THREADS) bound the search's workers."""
    from dyce.search.context import available_cpus

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cpus() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert available_cpus() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert available_cpus() >= 1


def by_rounds(records, macs, lambdas, *, max_rounds=1000):
    """Circular run round by round over full situations (the reference search)."""
    with SearchContext(records, check_inputs(records, macs), normalize=True, calibration=False,
                       progress=False) as context:
        return circular_by_rounds(context, lambdas, max_rounds=max_rounds)


@SEARCH_SETTINGS
@given(problem=tiny_problems(max_samples=30, max_positions=4))
def test_incremental_circular_equals_the_round_by_round_search(problem):
    records, macs = problem
    expected = by_rounds(records, macs, LAMBDAS)
    results = search_configs(records, macs, "circular", LAMBDAS, progress=False)
    for got, want in zip(results, expected, strict=True):
        assert got.config == want.config
        assert got.evaluation == want.evaluation


@pytest.mark.parametrize("rebuild", [0.0, 1.01])
def test_incremental_circular_on_realistic_records(monkeypatch, rebuild):
    """Child configurations derived from their parent (or always rebuilt) give exactly the
    round-by-round search."""
    import dyce.search.circular

    records = make_synthetic_records(3000, 6, 3, 10, seed=11)
    macs = make_synthetic_macs(6, 3)
    lambdas = list(np.linspace(0.5, 1.0, 21))
    expected = by_rounds(records, macs, lambdas)
    monkeypatch.setattr(dyce.search.circular, "REBUILD_FRACTION", rebuild)
    results = search_configs(records, macs, "circular", lambdas, progress=False)
    for got, want in zip(results, expected, strict=True):
        assert got.config == want.config
        assert got.evaluation == want.evaluation
        assert got.cost == want.cost


@pytest.mark.parametrize("engine", ["incremental", "by_rounds"])
def test_circular_that_converges_within_the_round_cap_does_not_warn(engine):
    """Both circular engines warn only when the cap stops a λ that could still improve."""
    records = make_synthetic_records(300, 4, 2, 10, seed=1)
    macs = make_synthetic_macs(4, 2)

    def run(**options):
        if engine == "by_rounds":
            return by_rounds(records, macs, [1.0, 0.0], **options)
        return search_configs(records, macs, "circular", [1.0, 0.0], progress=False, **options)

    full = run()
    assert [sum(k >= 0 for k, _ in r.config) for r in full] == [1, 1]  # one change each
    capped = run(max_rounds=1)
    assert [r.config for r in capped] == [r.config for r in full]


@pytest.mark.filterwarnings("default:circular search stopped")
def test_circular_warns_when_the_round_cap_stops_it():
    records = make_synthetic_records(500, 5, 2, 10, seed=3)
    macs = make_synthetic_macs(5, 2)
    with pytest.warns(UserWarning, match="max_rounds=1"):
        results = search_configs(records, macs, "circular", [0.9], progress=False, max_rounds=1)
    assert sum(k >= 0 for k, _ in results[0].config) == 1  # exactly one change applied
