"""Dense candidates: every row exact, a superset of the searched rows, λ rows independent."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dyce.cli import main
from dyce.errors import DyceError
from dyce.evaluate.exact import brute_force_evaluate, evaluate_config
from dyce.io import write_json
from dyce.records.format import read_records, write_records
from dyce.report.tables import (
    read_table,
    savings_at_tolerance,
    search_metadata,
    search_table,
    write_table,
)
from dyce.search import cost_scale, evaluation_cost, search_configs
from dyce.search.candidates import (
    RAISE_FRACTIONS,
    SHARED_THRESHOLDS,
    densify,
    family_counts,
    raised_thresholds,
    reach_counts,
    search_candidates,
)
from tests.synthetic import make_synthetic_macs, make_synthetic_records
from tests.test_evaluate import CONF_VALUES, assert_same, tiny_problems

LAMBDAS = [0.5, 0.8, 0.9, 0.97, 1.0]
CANDIDATE_SETTINGS = settings(max_examples=30, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])


@CANDIDATE_SETTINGS
@given(problem=tiny_problems(max_samples=30, max_positions=4),
       method=st.sampled_from(["onepass", "circular"]), calibration=st.booleans())
def test_every_candidate_row_re_evaluates_exactly(problem, method, calibration):
    records, macs = problem
    results = search_candidates(records, macs, method, LAMBDAS, calibration=calibration,
                                progress=False)
    scale = cost_scale(records, macs)
    for result in results:
        oracle = brute_force_evaluate(records, macs, result.config, calibration=calibration)
        assert_same(result.evaluation, oracle)
        assert result.cost == pytest.approx(
            scale_cost(oracle, result.lambda_, scale), abs=1e-9)


def scale_cost(evaluation, lambda_, scale):
    return evaluation_cost(evaluation, lambda_, scale)


@CANDIDATE_SETTINGS
@given(problem=tiny_problems(max_samples=30, max_positions=4),
       method=st.sampled_from(["onepass", "circular"]))
def test_dense_rows_contain_the_searched_rows_and_one_lambda_ignores_the_others(problem, method):
    records, macs = problem
    searched = search_configs(records, macs, method, LAMBDAS, progress=False)
    dense = search_candidates(records, macs, method, LAMBDAS, progress=False)
    firsts = [r for r in dense if r.candidate == "searched"]
    assert [(r.lambda_, r.config, r.evaluation, r.cost) for r in firsts] == [
        (r.lambda_, r.config, r.evaluation, r.cost) for r in searched]
    for lam in LAMBDAS:
        rows = [r for r in dense if r.lambda_ == lam]
        names = [r.candidate for r in rows]
        assert names[0] == "searched" and len(set(names)) == len(names)
        configs = [json.dumps(r.config) for r in rows]
        assert len(set(configs)) == len(configs)  # no duplicate row within a λ
        alone = search_candidates(records, macs, method, [lam], progress=False)
        assert [(r.candidate, r.config, r.evaluation) for r in alone] == [
            (r.candidate, r.config, r.evaluation) for r in rows]


def test_neighbours_are_the_documented_families():
    records = make_synthetic_records(400, 5, 2, 10, seed=3)
    macs = make_synthetic_macs(5, 2)
    (searched,) = search_configs(records, macs, "onepass", [0.9], progress=False)
    rows = densify(records, macs, [searched], cost_scale(records, macs))
    by_name = {r.candidate: r.config for r in rows}
    enabled = [p for p, (k, _t) in enumerate(searched.config) if k >= 0]
    assert enabled, "the test needs a configuration with exits"
    for fraction in RAISE_FRACTIONS:
        name = f"raise:{fraction:g}"
        if name in by_name:
            for p in enabled:
                t = searched.config[p][1]
                assert by_name[name][p] == [searched.config[p][0], t + fraction * (1 - t)]
    for value in SHARED_THRESHOLDS:
        name = f"shared:{value:.2f}"
        if name in by_name:
            assert all(by_name[name][p] == [searched.config[p][0], value] for p in enabled)
    for name, config in by_name.items():  # disabled positions stay disabled
        assert all(config[p] == searched.config[p] for p in range(len(config))
                   if p not in enabled), name


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_family_counts_match_one_evaluation_per_candidate(data):
    num_samples = data.draw(st.integers(1, 40))
    num_exits = data.draw(st.integers(0, 4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    confs = CONF_VALUES[rng.integers(0, CONF_VALUES.size, (num_exits, num_samples))]
    right = rng.random((num_exits, num_samples)) < 0.6
    final_right = rng.random(num_samples) < 0.7
    base = np.sort(rng.choice(np.append(CONF_VALUES.astype(np.float64), [0.3, 0.05]),
                              size=num_exits))
    thresholds = raised_thresholds(base, (0.0, *RAISE_FRACTIONS))
    reach = np.stack([reach_counts(confs[j], thresholds[:, j]) for j in range(num_exits)]) \
        if num_exits else np.zeros((0, num_samples), dtype=np.uint8)
    exits, hits = family_counts(reach, right, final_right, thresholds.shape[0])
    for i in range(thresholds.shape[0]):
        remaining = np.ones(num_samples, dtype=bool)
        for j in range(num_exits):
            leave = remaining & (confs[j].astype(np.float64) > thresholds[i, j])
            assert exits[i, j] == leave.sum() and hits[i, j] == (leave & right[j]).sum()
            remaining &= ~leave
        assert exits[i, -1] == remaining.sum()
        assert hits[i, -1] == (remaining & final_right).sum()


def test_dense_front_saves_at_least_as_much_on_validation():
    search = make_synthetic_records(2000, 9, 3, 100, seed=5)
    val = make_synthetic_records(3000, 9, 3, 100, seed=6)
    macs = make_synthetic_macs(9, 3)
    lambdas = [float(v) for v in np.round(np.arange(0.5, 1.0001, 0.02), 2)]
    figures = {}
    for mode in ("searched", "dense"):
        rows = search_candidates(search, macs, "onepass", lambdas, candidates=mode,
                                 progress=False)
        table = pl.DataFrame({
            "relative_macs": [evaluate_config(val, macs, r.config).relative_macs for r in rows],
            "relative_acc": [evaluate_config(val, macs, r.config).relative_acc for r in rows],
        })
        figures[mode] = (savings_at_tolerance(table), table.height)
    assert figures["dense"][1] > 10 * figures["searched"][1]
    assert figures["dense"][0] >= figures["searched"][0]


def test_unknown_candidate_set_is_refused():
    records = make_synthetic_records(50, 3, 2, 5, seed=1)
    with pytest.raises(DyceError) as error:
        search_candidates(records, make_synthetic_macs(3, 2), "onepass", [0.9], candidates="all")
    assert error.value.field == "candidates"


@pytest.fixture
def cli_files(tmp_path):
    train = make_synthetic_records(300, 4, 2, 10, seed=1, model="net", dataset="toy",
                                   split="search")
    val = make_synthetic_records(250, 4, 2, 10, seed=2, model="net", dataset="toy", split="val")
    write_records(tmp_path / "search.parquet", train)
    write_records(tmp_path / "val.parquet", val)
    write_json(tmp_path / "macs.json", make_synthetic_macs(4, 2))
    return train, val, tmp_path


@pytest.mark.parametrize("method", ["onepass", "circular"])
def test_searched_mode_writes_exactly_the_original_table(cli_files, method):
    train, _, tmp = cli_files
    out = tmp / "searched.parquet"
    assert main(["search", str(tmp / "search.parquet"), "--macs-info", str(tmp / "macs.json"),
                 "--method", method, "--lambda-range", "0.5", "1.0", "0.05",
                 "--candidates", "searched", "--no-progress", "--out", str(out)]) == 0
    # What `dyce search` wrote before candidates existed: search_configs → one row per λ
    # (the range includes STOP when the grid reaches it).
    lambdas = [float(v) for v in np.round(0.5 + 0.05 * np.arange(11), 12)]
    train = read_records(tmp / "search.parquet")
    results = search_configs(train, str(tmp / "macs.json"), method, lambdas, progress=False)
    expected = tmp / "expected.parquet"
    write_table(search_table(results, method=method, model="net", dataset="toy"), expected,
                search_metadata(train, method=method, normalize=True, calibration=False,
                                macs_info=str(tmp / "macs.json"), warnings=[]))
    assert out.read_bytes() == expected.read_bytes()


def test_dense_table_flows_through_evaluate_front_and_summary(cli_files, capsys):
    _, val, tmp = cli_files
    macs = str(tmp / "macs.json")
    search, evaluated, front = (tmp / n for n in ("s.parquet", "e.parquet", "f.parquet"))
    assert main(["search", str(tmp / "search.parquet"), "--macs-info", macs, "--method",
                 "onepass", "--lambda", "0.9", "0.95", "--no-progress", "--out",
                 str(search)]) == 0
    table, metadata = read_table(search)
    assert metadata["candidates"] == "dense"
    assert table.columns.index("candidate") == table.columns.index("parameter") + 1
    assert table.group_by("lambda").agg(pl.col("candidate").first())["candidate"].to_list() \
        == ["searched", "searched"]
    assert table.select("lambda", "candidate").is_unique().all()
    assert main(["evaluate", str(search), "--records", str(tmp / "val.parquet"), "--macs-info",
                 macs, "--no-progress", "--out", str(evaluated)]) == 0
    rows, _ = read_table(evaluated)
    assert rows["candidate"].to_list() == table["candidate"].to_list()
    for row in rows.iter_rows(named=True):
        expected = evaluate_config(val, make_synthetic_macs(4, 2), json.loads(row["config"]))
        assert (row["relative_macs"], row["relative_acc"]) == (expected.relative_macs,
                                                               expected.relative_acc)
    assert main(["front", str(evaluated), "--out", str(front)]) == 0
    front_rows, _ = read_table(front)
    assert "candidate" in front_rows.columns and front_rows.height >= 1
    summary = tmp / "summary.csv"
    assert main(["summary", str(front), "--out", str(summary)]) == 0
    assert "candidate" in pl.read_csv(summary).columns
