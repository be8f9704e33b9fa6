"""Result tables: Pareto filter, single-exit points, headline savings, table files."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyce.errors import DyceError
from dyce.evaluate.strategies import msdnet, patience
from dyce.report.tables import (
    SEARCH_SCHEMA,
    config_to_json,
    evaluate_table,
    pareto_front,
    parse_config,
    read_table,
    savings_at_tolerance,
    search_table,
    single_exit_points,
    summary_figures,
    write_table,
)
from dyce.search import search_configs
from tests.synthetic import make_synthetic_macs, make_synthetic_records


def plain_front(rows: list[tuple[float, float]]) -> list[int]:
    """The original filter as a loop: indices (into ``rows``) of the kept rows."""
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])  # stable
    kept = [order[0]] if order else []
    for i in order[1:]:
        if rows[i][1] > rows[kept[-1]][1]:
            kept.append(i)
    return kept


# Few distinct values so that ties in MACs and in accuracy are common.
_value = st.sampled_from([0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_value, _value), max_size=25))
def test_pareto_front_equals_the_plain_sequential_filter(rows):
    df = pl.DataFrame(
        {"relative_macs": [r[0] for r in rows], "relative_acc": [r[1] for r in rows],
         "row": list(range(len(rows)))},
        schema={"relative_macs": pl.Float64, "relative_acc": pl.Float64, "row": pl.Int64},
    )
    front = pareto_front(df)
    assert front.get_column("row").to_list() == plain_front(rows)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), _value, _value), max_size=20))
def test_pareto_front_by_group_is_the_front_of_each_group(rows):
    df = pl.DataFrame(
        {"method": [r[0] for r in rows], "relative_macs": [r[1] for r in rows],
         "relative_acc": [r[2] for r in rows], "row": list(range(len(rows)))},
        schema={"method": pl.String, "relative_macs": pl.Float64, "relative_acc": pl.Float64,
                "row": pl.Int64},
    )
    front = pareto_front(df, by=["method"])
    for method in ("a", "b"):
        indices = [i for i, r in enumerate(rows) if r[0] == method]
        expected = [indices[j] for j in plain_front([rows[i][1:] for i in indices])]
        got = front.filter(pl.col("method") == method).get_column("row").to_list()
        assert got == expected


def test_savings_at_tolerance_picks_the_cheapest_row_within_the_drop():
    df = pl.DataFrame({"relative_macs": [0.4, 0.6, 0.7, 1.0],
                       "relative_acc": [0.98, 0.995, 0.999, 1.0]})
    assert savings_at_tolerance(df) == pytest.approx(0.4)
    assert savings_at_tolerance(df, tolerance=0.02) == pytest.approx(0.6)
    assert math.isnan(savings_at_tolerance(df.filter(pl.col("relative_acc") < 0.99)))


def test_summary_figures_per_method():
    df = pl.DataFrame({
        "model": ["m"] * 4, "dataset": ["d"] * 4, "method": ["a", "a", "b", "b"],
        "relative_macs": [0.5, 0.8, 0.3, 0.9], "relative_acc": [0.99, 1.0, 0.999, 1.001],
    })
    summary = summary_figures(df)
    saved = dict(zip(summary["method"], summary["macs_saved"], strict=True))
    assert saved["a"] == pytest.approx(0.2)
    assert saved["b"] == pytest.approx(0.7)
    strict = summary_figures(df, tolerance=0.0)
    saved = dict(zip(strict["method"], strict["macs_saved"], strict=True))
    assert saved["a"] == pytest.approx(0.2)
    assert saved["b"] == pytest.approx(0.1)


def test_single_exit_points_match_a_per_exit_count():
    records = make_synthetic_records(300, 4, 2, 10, seed=3)
    info = make_synthetic_macs(4, 2)
    points = single_exit_points(records, info)
    assert points.height == 3 * 2 + 1
    final_correct = sum(int(records.preds[-1, n, 0] == records.labels[n]) for n in range(300))
    for row in points.iter_rows(named=True):
        p, k = row["position"], row["exit_type"]
        if k is None:
            assert p == 3 and row["exit_type_name"] == "final"
            assert row["raw_macs"] == info["backbone"]["ori_macs"]
            assert row["relative_acc"] == pytest.approx(1.0)
            continue
        e = p * 2 + k
        correct = sum(int(records.preds[e, n, 0] == records.labels[n]) for n in range(300))
        assert row["raw_acc"] == pytest.approx(correct / 300)
        assert row["relative_acc"] == pytest.approx(correct / final_correct)
        macs = info["backbone"]["macs"][p] + info["head"][k]["macs"][p]
        assert row["raw_macs"] == macs
        assert row["relative_macs"] == pytest.approx(macs / info["backbone"]["ori_macs"])
        assert row["exit_type_name"] == records.exit_types[k]


def test_search_and_evaluate_tables_round_trip(tmp_path):
    train = make_synthetic_records(400, 4, 2, 10, seed=1)
    val = make_synthetic_records(300, 4, 2, 10, seed=2)
    info = make_synthetic_macs(4, 2)
    results = search_configs(train, info, "onepass", [0.6, 0.9], progress=False)
    peers = msdnet(train, info, qs=[0.5], progress=False) + patience(train, info, progress=False)
    table = pl.concat([
        search_table(results, method="onepass", model="m", dataset="d"),
        search_table(peers[:2], method="msdnet", model="m", dataset="d"),
        search_table(peers[2:], method="patience", model="m", dataset="d"),
    ])
    assert table.schema == pl.Schema(SEARCH_SCHEMA)
    assert table["lambda"].to_list()[:2] == [0.6, 0.9]
    assert table["lambda"].null_count() == table.height - 2
    assert table.filter(pl.col("method") == "patience")["parameter_name"].unique().to_list() == [
        "patience"]
    for ratio in table["exit_ratio_tr"]:
        assert len(json.loads(ratio)) == 4 and sum(json.loads(ratio)) == pytest.approx(1.0)

    evaluated = evaluate_table(table, val, info)
    from dyce.evaluate.strategies import evaluate_any
    for row in evaluated.iter_rows(named=True):
        expected = evaluate_any(val, info, json.loads(row["config"]))
        assert row["relative_macs"] == expected.relative_macs
        assert row["relative_acc"] == expected.relative_acc
    path = tmp_path / "eval.parquet"
    write_table(evaluated, path, {"num_positions": 4})
    back, metadata = read_table(path)
    assert back.equals(evaluated)
    assert metadata == {"num_positions": 4}


def test_parse_config_names_the_file_and_row():
    records = make_synthetic_records(10, 3, 2, 5)
    assert parse_config(config_to_json([[0, 0.5], [-1, 1.0]]), records) == [[0, 0.5], [-1, 1.0]]
    for bad in ("[[0, 0.5]]", "[[2, 0.5], [0, 0.5]]", "[[0, 1.5], [0, 0.5]]", "nope", "{}"):
        with pytest.raises(DyceError, match=r"t\.parquet: field 'config \(row 3\)'"):
            parse_config(bad, records, source="t.parquet", row=3)


def test_read_table_errors_name_the_file(tmp_path):
    with pytest.raises(DyceError, match="missing.parquet"):
        read_table(tmp_path / "missing.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(DyceError, match="junk.parquet"):
        read_table(junk)

