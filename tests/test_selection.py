"""``dyce select``: risk-controlled operating points on a calibration split."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from dyce.cli import main
from dyce.evaluate.exact import brute_force_evaluate, evaluate_config
from dyce.io import write_json
from dyce.macs.info import load_macs_info
from dyce.records.format import write_records
from dyce.runtime.selection import Candidate, original_config, select_operating_point
from tests.synthetic import make_synthetic_macs, make_synthetic_records

POSITIONS, TYPES, CLASSES = 4, 2, 5


def _cp_upper(losses: int, n: int, delta: float) -> float:
    """Clopper–Pearson upper bound by root finding on the binomial CDF (independent formula)."""
    if losses >= n:
        return 1.0
    return optimize.brentq(lambda p: stats.binom.cdf(losses, n, p) - delta, 1e-15, 1 - 1e-15,
                           xtol=1e-14)


def _net_bound(breaks, fixes, final_right, n, delta):
    """The net-drop bound restated: discordance and break share at delta/4, accuracy at delta/2."""
    rate = _cp_upper(breaks + fixes, n, delta / 4)
    share = _cp_upper(breaks, breaks + fixes, delta / 4) if breaks + fixes else 1.0
    low = 1.0 - _cp_upper(n - final_right, n, delta / 2)
    return max(rate * (2 * share - 1), 0.0) / low if low > 0 else float("inf")


def _brute_force_selection(candidates, records, macs, tolerance, delta, loss):
    """Plain re-statement of the procedure: (config, passed, bound, tested)."""
    order = sorted(range(len(candidates)),
                   key=lambda i: (candidates[i].search_loss, -candidates[i].relative_macs_tr, i))
    staircase, cheapest = [], float("inf")  # only those cheaper than every one before them
    for i in order:
        if candidates[i].relative_macs_tr < cheapest:
            staircase.append(i)
            cheapest = candidates[i].relative_macs_tr
    order = staircase
    passed, tested = [], 0
    n = records.num_samples
    final = [int(records.preds[-1, s, 0] == records.labels[s]) for s in range(n)]
    for i in order:
        evaluation = brute_force_evaluate(records, macs, candidates[i].config, per_sample=True)
        mine = [int(evaluation.prediction[s] == records.labels[s]) for s in range(n)]
        breaks = sum(f and not m for f, m in zip(final, mine, strict=True))
        fixes = sum(m and not f for f, m in zip(final, mine, strict=True))
        if loss == "breaks":
            bound = _cp_upper(breaks, sum(final), delta)
        elif loss == "net":
            bound = _net_bound(breaks, fixes, sum(final), n, delta)
        else:
            bound = min(_cp_upper(breaks, sum(final), delta / 2),
                        _net_bound(breaks, fixes, sum(final), n, delta / 2))
        tested += 1
        if bound > tolerance:
            break
        passed.append((evaluation.relative_macs, -evaluation.relative_acc, len(passed), i, bound))
    passed = [item for item in passed if item[0] < 1.0]  # else the original model is cheaper
    if not passed:
        return original_config(records.num_positions), False, 0.0, tested
    *_, i, bound = min(passed)
    return candidates[i].config, True, bound, tested


config_strategy = st.lists(
    st.tuples(st.integers(-1, TYPES - 1), st.sampled_from([0.0, 0.3, 0.5, 0.7, 0.9, 1.0])),
    min_size=POSITIONS - 1, max_size=POSITIONS - 1,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    num_samples=st.integers(5, 60),
    configs=st.lists(config_strategy, min_size=1, max_size=6),
    figures=st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.2]), st.sampled_from([0.2, 0.5])),
                     min_size=6, max_size=6),
    tolerance=st.sampled_from([0.05, 0.2, 0.5, 0.9]),
    delta=st.sampled_from([0.05, 0.1, 0.5]),
    loss=st.sampled_from(["breaks", "net", "auto"]),
)
def test_selection_equals_brute_force(seed, num_samples, configs, figures, tolerance, delta,
                                      loss):
    records = make_synthetic_records(num_samples, POSITIONS, TYPES, CLASSES, seed=seed)
    if not records.correct[-1].any():
        return
    macs = load_macs_info(make_synthetic_macs(POSITIONS, TYPES))
    candidates = [Candidate([[k, t] for k, t in config], cost, {"row": i}, search_loss=loss)
                  for i, (config, (loss, cost)) in enumerate(zip(configs, figures, strict=False))]
    got = select_operating_point(candidates, records, macs, tolerance=tolerance, delta=delta,
                                 loss=loss)
    config, passed, bound, tested = _brute_force_selection(candidates, records, macs,
                                                           tolerance, delta, loss)
    assert got.passed is passed
    assert got.config == config
    assert got.tested == tested
    assert got.bound == pytest.approx(bound, abs=1e-9)
    if passed:
        evaluation = brute_force_evaluate(records, macs, config)
        assert got.relative_macs == pytest.approx(evaluation.relative_macs, rel=1e-12)
        assert got.relative_acc == pytest.approx(evaluation.relative_acc, rel=1e-12)
        assert got.bound <= tolerance


@pytest.mark.parametrize("loss", ["breaks", "net", "auto"])
def test_promise_holds_over_calibration_draws(loss):
    """Over many calibration draws, the chosen configuration's population drop exceeds the
    tolerance in at most about ``delta`` of them (the guarantee, checked empirically)."""
    population = make_synthetic_records(40_000, POSITIONS, TYPES, CLASSES, seed=7)
    macs = load_macs_info(make_synthetic_macs(POSITIONS, TYPES))
    thresholds = np.linspace(0.2, 1.0, 17)
    configs = [[[1, t], [1, t], [1, t]] for t in thresholds]
    true_drop = []
    for config in configs:
        evaluation = evaluate_config(population, macs, config)
        true_drop.append(1.0 - evaluation.relative_acc)
    # The order must not depend on the calibration labels: thresholds, most conservative first.
    candidates = [Candidate(c, 1.0 - i * 1e-2, {"row": i}, search_loss=i * 1e-3)
                  for i, c in enumerate(reversed(configs))]  # most conservative first
    drops = dict(zip((json.dumps(c) for c in configs), true_drop, strict=True))
    tolerance, delta, n = 0.03, 0.2, 600
    assert min(true_drop) <= tolerance < max(true_drop)  # the problem is not trivial
    rng = np.random.default_rng(0)
    failures = passes = 0
    draws = 300
    for _ in range(draws):
        pick = rng.choice(population.num_samples, n, replace=False)
        calib = replace(population, labels=population.labels[pick], preds=population.preds[:, pick],
                        confs=population.confs[:, pick], sample_ids=None)
        selection = select_operating_point(candidates, calib, macs, tolerance=tolerance,
                                           delta=delta, loss=loss)
        if selection.passed:
            passes += 1
            failures += drops[json.dumps(selection.config)] > tolerance
    assert passes > draws // 2  # it does choose exits
    # Binomial slack: P(Bin(300, 0.2) > 75) < 3 %.
    assert failures <= 75


# --------------------------------------------------------------------------- command line


@pytest.fixture
def files(tmp_path):
    """Search, calibration and validation records of one model, and search tables."""
    paths = {name: tmp_path / f"{name}.parquet" for name in ("search", "calib", "val", "other")}
    sizes = {"search": 2000, "calib": 3000, "val": 2000, "other": 500}
    for seed, (name, path) in enumerate(paths.items()):
        model = "other_net" if name == "other" else "net"
        split = "calib" if name == "other" else name
        write_records(path, make_synthetic_records(sizes[name], POSITIONS, TYPES, 10, seed=seed,
                                                   model=model, dataset="toy", split=split))
    macs = tmp_path / "macs.json"
    write_json(macs, make_synthetic_macs(POSITIONS, TYPES))
    tables = {}
    for method, extra in (("onepass", ["--lambda-range", "0.8", "1.01", "0.02"]),
                          ("global_threshold", ["--exit-type", "1"])):
        tables[method] = tmp_path / f"{method}.parquet"
        assert main(["search", str(paths["search"]), "--macs-info", str(macs), "--method",
                     method, *extra, "--no-progress", "--out", str(tables[method])]) == 0
    return {**{k: str(v) for k, v in paths.items()}, "macs": str(macs),
            "tables": [str(t) for t in tables.values()]}


def _select(files, out, *extra, records=None):
    return main(["select", *files["tables"], "--records", records or files["calib"],
                 "--macs-info", files["macs"], *extra, "--out", str(out)])


def test_select_writes_one_choice_per_method(files, tmp_path, capsys):
    out = tmp_path / "choice.json"
    assert _select(files, out, "--tolerance", "0.02", "--delta", "0.1") == 0
    choice = json.loads(out.read_text())
    assert set(choice) == {"onepass", "global_threshold"}
    calib = make_synthetic_records(3000, POSITIONS, TYPES, 10, seed=1)
    macs = load_macs_info(make_synthetic_macs(POSITIONS, TYPES))
    for method, value in choice.items():
        assert value["tolerance"] == 0.02 and value["delta"] == 0.1
        assert value["num_samples"] == 3000
        assert len(value["config"]) == POSITIONS - 1
        assert all(len(pair) == 2 and -1 <= pair[0] < TYPES for pair in value["config"])
        assert value["passed"], method
        assert value["bound"] <= 0.02
        assert value["search_row"]["method"] == method
        evaluation = evaluate_config(calib, macs, value["config"])
        assert value["relative_macs"] == evaluation.relative_macs
        assert value["relative_acc"] == evaluation.relative_acc
        assert value["accuracy_drop"] == pytest.approx(1 - evaluation.relative_acc)
        assert value["relative_macs"] < 1.0
    assert "MACs saved" in capsys.readouterr().out


def test_select_falls_back_to_the_original_model(files, tmp_path):
    out = tmp_path / "choice.json"
    # 3000 samples cannot bound a loss below 1e-4 at delta 0.01: nothing passes.
    assert _select(files, out, "--tolerance", "0.0001", "--delta", "0.01") == 0
    choice = json.loads(out.read_text())
    for value in choice.values():
        assert value["passed"] is False
        assert value["config"] == [[-1, 1.0]] * (POSITIONS - 1)
        assert value["relative_macs"] == 1.0 and value["accuracy_drop"] == 0.0
        assert value["search_row"] is None


@pytest.mark.parametrize("option, value, field", [
    ("--tolerance", "0", "tolerance"), ("--tolerance", "1", "tolerance"),
    ("--tolerance", "-0.1", "tolerance"), ("--tolerance", "nan", "tolerance"),
    ("--delta", "0", "delta"), ("--delta", "1.5", "delta"),
])
def test_select_refuses_levels_outside_zero_one(files, tmp_path, capsys, option, value, field):
    out = tmp_path / "choice.json"
    assert _select(files, out, option, value) == 2
    error = capsys.readouterr().err
    assert field in error and error.count("\n") == 1
    assert not out.exists() and list(tmp_path.glob(".choice*")) == []


def test_select_refuses_records_of_another_model(files, tmp_path, capsys):
    out = tmp_path / "choice.json"
    assert _select(files, out, records=files["other"]) == 2
    error = capsys.readouterr().err
    assert "model" in error and "other_net" in error and files["tables"][0] in error
    assert not out.exists()


def test_select_refuses_the_search_records(files, tmp_path, capsys):
    out = tmp_path / "choice.json"
    assert _select(files, out, records=files["search"]) == 2
    assert "held-out" in capsys.readouterr().err
    assert not out.exists()


def test_select_refuses_an_empty_split(files, tmp_path, capsys):
    empty = make_synthetic_records(0, POSITIONS, TYPES, 10)
    path = tmp_path / "empty.npz"
    np.savez(path, label=empty.labels.reshape(-1, 1), preds=empty.preds, confs=empty.confs)
    out = tmp_path / "choice.json"
    assert _select(files, out, records=str(path)) == 2
    error = capsys.readouterr().err
    assert "no samples" in error and str(path) in error
    assert not out.exists()


def test_evaluate_shows_whether_the_promise_held(files, tmp_path, capsys):
    choice, evaluated = tmp_path / "choice.json", tmp_path / "promise.parquet"
    assert _select(files, choice, "--tolerance", "0.02") == 0
    assert main(["evaluate", str(choice), "--records", files["val"], "--macs-info", files["macs"],
                 "--no-progress", "--out", str(evaluated)]) == 0
    from dyce.report.tables import read_table

    table, _ = read_table(evaluated)
    assert sorted(table["method"].to_list()) == ["global_threshold", "onepass"]
    val = make_synthetic_records(2000, POSITIONS, TYPES, 10, seed=2)
    macs = load_macs_info(make_synthetic_macs(POSITIONS, TYPES))
    chosen = json.loads(choice.read_text())
    for row in table.iter_rows(named=True):
        assert json.loads(row["config"]) == chosen[row["method"]]["config"]
        expected = evaluate_config(val, macs, json.loads(row["config"]))
        assert row["relative_acc"] == expected.relative_acc
        assert row["macs_saved"] == pytest.approx(1 - expected.relative_macs)
        assert row["met_tolerance"] == (expected.relative_acc >= 1 - 0.02 - 1e-12)
        assert row["calib_bound"] == chosen[row["method"]]["bound"] and row["tolerance"] == 0.02
    assert capsys.readouterr().out.count("promise ≤ 2 %") == 2


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), num_samples=st.integers(1, 40),
       configs=st.lists(config_strategy, min_size=1, max_size=4))
def test_search_losses_equal_brute_force(seed, num_samples, configs):
    from dyce.runtime.selection import configuration_losses

    records = make_synthetic_records(num_samples, POSITIONS, TYPES, CLASSES, seed=seed)
    macs = load_macs_info(make_synthetic_macs(POSITIONS, TYPES))
    configs = [[[k, t] for k, t in config] for config in configs]
    breaks_only = configuration_losses(records, macs, configs, "breaks")
    net = configuration_losses(records, macs, configs, "net")
    right = [s for s in range(num_samples) if records.preds[-1, s, 0] == records.labels[s]]
    others = [s for s in range(num_samples) if s not in right]
    for config, got_breaks, got_net in zip(configs, breaks_only, net, strict=True):
        prediction = brute_force_evaluate(records, macs, config, per_sample=True).prediction
        if not right:
            assert np.isnan(got_breaks) and np.isnan(got_net)
        else:
            wrong = sum(int(prediction[s] != records.labels[s]) for s in right)
            fixed = sum(int(prediction[s] == records.labels[s]) for s in others)
            assert got_breaks == wrong / len(right)
            assert got_net == (wrong - fixed) / len(right)


def test_select_orders_by_cost_without_search_records(files, tmp_path):
    by_risk, by_macs = tmp_path / "risk.json", tmp_path / "by_macs.json"
    assert _select(files, by_risk, "--tolerance", "0.02") == 0
    assert _select(files, by_macs, "--tolerance", "0.02", "--order", "macs",
                   "--search-records", "/nonexistent.parquet") == 0
    risk, macs = json.loads(by_risk.read_text()), json.loads(by_macs.read_text())
    assert {v["order"] for v in risk.values()} == {"risk"}
    assert {v["order"] for v in macs.values()} == {"macs"}
    assert all(v["passed"] and v["bound"] <= 0.02 for v in macs.values())


def test_summary_shows_both_views(files, tmp_path):
    import polars as pl

    choice, promise = tmp_path / "choice.json", tmp_path / "promise.parquet"
    evaluated, front, summary = (tmp_path / n for n in ("eval.parquet", "front.parquet",
                                                        "summary.csv"))
    assert _select(files, choice, "--tolerance", "0.02") == 0
    common = ["--records", files["val"], "--macs-info", files["macs"], "--no-progress"]
    assert main(["evaluate", str(choice), *common, "--out", str(promise)]) == 0
    assert main(["evaluate", *files["tables"], *common, "--out", str(evaluated)]) == 0
    assert main(["front", str(evaluated), "--out", str(front)]) == 0
    assert main(["summary", str(front), "--tolerance", "0.02", "--selected", str(promise),
                 "--out", str(summary)]) == 0
    table = pl.read_csv(summary)
    promised = pl.read_parquet(promise)
    assert sorted(table["method"].to_list()) == ["global_threshold", "onepass"]
    for row in table.iter_rows(named=True):
        mine = promised.filter(pl.col("method") == row["method"]).row(0, named=True)
        assert row["selected_macs_saved"] == pytest.approx(mine["macs_saved"])
        assert row["selected_accuracy_drop"] == pytest.approx(mine["accuracy_drop"])
        assert row["selected_met_tolerance"] == mine["met_tolerance"]


def test_select_accepts_tables_whose_model_column_was_renamed(files, tmp_path):
    """The workflow names tables after the config's model key (dyce search --model), which
    differs from the architecture the records name; provenance comes from the search records."""
    renamed = tmp_path / "renamed.parquet"
    assert main(["search", files["search"], "--macs-info", files["macs"], "--method",
                 "onepass", "--lambda", "0.9", "--model", "my_key", "--no-progress",
                 "--out", str(renamed)]) == 0
    out = tmp_path / "choice.json"
    assert main(["select", str(renamed), "--records", files["calib"], "--macs-info",
                 files["macs"], "--tolerance", "0.05", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["onepass"]["search_row"]["model"] == "my_key"


def test_the_original_model_keeps_the_tables_model_name(files, tmp_path):
    renamed = tmp_path / "renamed.parquet"
    assert main(["search", files["search"], "--macs-info", files["macs"], "--method",
                 "onepass", "--lambda", "0.9", "--model", "my_key", "--no-progress",
                 "--out", str(renamed)]) == 0
    choice, checked = tmp_path / "choice.json", tmp_path / "checked.parquet"
    assert main(["select", str(renamed), "--records", files["calib"], "--macs-info",
                 files["macs"], "--tolerance", "0.0001", "--delta", "0.01",
                 "--out", str(choice)]) == 0
    assert json.loads(choice.read_text())["onepass"]["passed"] is False
    assert main(["evaluate", str(choice), "--records", files["val"], "--macs-info",
                 files["macs"], "--no-progress", "--out", str(checked)]) == 0
    import polars as pl

    assert pl.read_parquet(checked)["model"].to_list() == ["my_key"]  # joins the summary
