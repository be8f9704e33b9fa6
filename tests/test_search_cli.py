"""``dyce search`` → ``dyce evaluate`` → ``dyce front``, in-process, and their error paths."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from dyce.cli import main
from dyce.evaluate.strategies import evaluate_any
from dyce.io import write_json
from dyce.records.format import write_records
from dyce.report.tables import pareto_front, read_table
from tests.synthetic import make_synthetic_macs, make_synthetic_records


@pytest.fixture
def files(tmp_path):
    """Search and validation records (Parquet and .npz) and the matching macs_info."""
    train = make_synthetic_records(300, 4, 2, 10, seed=1, model="net", dataset="toy", split="train")
    val = make_synthetic_records(250, 4, 2, 10, seed=2, model="net", dataset="toy", split="val")
    paths = {
        "train": tmp_path / "train.parquet",
        "val": tmp_path / "val.parquet",
        "npz": tmp_path / "train.npz",
        "macs": tmp_path / "macs.json",
    }
    write_records(paths["train"], train)
    write_records(paths["val"], val)
    np.savez_compressed(paths["npz"], label=train.labels.astype(np.int16).reshape(-1, 1),
                        preds=train.preds.astype(np.int16), confs=train.confs)
    write_json(paths["macs"], make_synthetic_macs(4, 2))
    paths["val_records"] = val
    return {k: (str(v) if not hasattr(v, "labels") else v) for k, v in paths.items()}


def test_search_evaluate_front_round_trip(files, tmp_path, capsys):
    result = tmp_path / "search" / "lambda_0.93.parquet"
    assert main(["search", files["train"], "--macs-info", files["macs"], "--method", "onepass",
                 "--lambda", "0.93", "--candidates", "searched", "--no-progress",
                 "--out", str(result)]) == 0
    table, metadata = read_table(result)
    assert table.height == 1
    row = table.row(0, named=True)
    assert (row["model"], row["dataset"], row["method"]) == ("net", "toy", "onepass")
    assert row["lambda"] == 0.93 and row["parameter_name"] == "lambda"
    assert metadata["exit_types"] == ["mlp1x1000", "mlp3x500"] and metadata["normalize"] is True

    peers = tmp_path / "msdnet.parquet"
    assert main(["search", files["npz"], "--macs-info", files["macs"], "--method", "msdnet",
                 "--exit-type", "mlp3x500", "--parameter", "0.5", "1.0", "--model", "net",
                 "--dataset", "toy", "--no-progress", "--out", str(peers)]) == 0
    peer_table, _ = read_table(peers)
    assert peer_table["parameter"].to_list() == [0.5, 1.0]
    assert peer_table["exit_type"].to_list() == [1, 1]
    assert peer_table["lambda"].null_count() == 2

    evaluated = tmp_path / "eval.parquet"
    assert main(["evaluate", str(result), str(peers), "--records", files["val"], "--macs-info",
                 files["macs"], "--no-progress", "--out", str(evaluated)]) == 0
    eval_table, _ = read_table(evaluated)
    assert eval_table.height == 3
    val = files["val_records"]
    info = make_synthetic_macs(4, 2)
    for row in eval_table.iter_rows(named=True):
        expected = evaluate_any(val, info, json.loads(row["config"]))
        assert row["relative_macs"] == expected.relative_macs
        assert row["relative_acc"] == expected.relative_acc
        assert json.loads(row["exit_ratio"]) == pytest.approx(list(expected.exit_ratio))

    front, front_csv = tmp_path / "front.parquet", tmp_path / "front.csv"
    assert main(["front", str(evaluated), "--out", str(front), "--csv", str(front_csv)]) == 0
    front_table, _ = read_table(front)
    assert front_table.equals(pareto_front(eval_table, by=["model", "dataset", "method"]))
    assert pl.read_csv(front_csv).height == front_table.height
    assert "MACs saved" in capsys.readouterr().out


def test_patience_and_global_threshold_tables_evaluate(files, tmp_path):
    for method, extra in (("patience", []), ("global_threshold", ["--parameter", "0.5", "0.9"])):
        out = tmp_path / f"{method}.parquet"
        assert main(["search", files["train"], "--macs-info", files["macs"], "--method", method,
                     *extra, "--no-progress", "--out", str(out)]) == 0
        evaluated = tmp_path / f"{method}_eval.parquet"
        assert main(["evaluate", str(out), "--records", files["val"], "--macs-info",
                     files["macs"], "--no-progress", "--out", str(evaluated)]) == 0
        table, _ = read_table(evaluated)
        # Every exit type is its own series: P-1 = 3 patience values or 2 thresholds each.
        assert table.height == 2 * (3 if method == "patience" else 2)
        assert sorted(set(table["exit_type"].to_list())) == [0, 1]
        assert table["relative_macs"].null_count() == 0


def _fails(argv, out, capsys, *expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*")), "temporary file left behind"


def test_search_errors_exit_2_and_write_nothing(files, tmp_path, capsys):
    out = tmp_path / "out" / "result.parquet"
    base = ["search", files["train"], "--macs-info", files["macs"], "--no-progress",
            "--out", str(out)]
    _fails(base + ["--method", "bogus"], out, capsys, "field 'method'", "bogus")
    _fails(base + ["--method", "onepass", "--lambda", "-0.1"], out, capsys, "field 'lambda'")
    _fails(base + ["--method", "onepass", "--lambda", "nan"], out, capsys, "field 'lambda'")
    _fails(base + ["--method", "msdnet", "--lambda", "0.9"], out, capsys, "field 'lambda'")
    _fails(base + ["--method", "patience", "--exit-type", "mlp9"], out, capsys,
           "field 'exit_type'")
    bad_macs = tmp_path / "macs5.json"
    write_json(bad_macs, make_synthetic_macs(5, 2))
    _fails(["search", files["train"], "--macs-info", str(bad_macs), "--method", "onepass",
            "--lambda", "0.9", "--out", str(out)], out, capsys, "train.parquet",
           "field 'num_positions'")
    _fails(["search", str(tmp_path / "none.parquet"), "--macs-info", files["macs"],
            "--method", "onepass", "--out", str(out)], out, capsys, "none.parquet")


def test_lambda_above_one_warns_but_runs(files, tmp_path, capsys):
    out = tmp_path / "result.parquet"
    assert main(["search", files["train"], "--macs-info", files["macs"], "--method",
                 "samethres", "--lambda", "1.2", "--lambda-range", "0.9", "1.05", "0.05",
                 "--no-progress", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "1.2" in err
    table, _ = read_table(out)
    # STOP is included when the grid reaches it (as the workflow's lambdas), in exact steps.
    assert table["lambda"].to_list() == [1.2, 0.9, 0.95, 1.0, 1.05]
    assert table["config"].to_list()[1] == json.dumps([[0, 0.9]] * 3)


def test_evaluate_rejects_a_different_exit_table(files, tmp_path, capsys):
    result = tmp_path / "result.parquet"
    assert main(["search", files["train"], "--macs-info", files["macs"], "--method", "onepass",
                 "--lambda", "0.9", "--no-progress", "--out", str(result)]) == 0
    other = make_synthetic_records(50, 5, 2, 10, seed=3)
    other_path, other_macs = tmp_path / "val5.parquet", tmp_path / "macs5.json"
    write_records(other_path, other)
    write_json(other_macs, make_synthetic_macs(5, 2))
    out = tmp_path / "eval.parquet"
    _fails(["evaluate", str(result), "--records", str(other_path), "--macs-info",
            str(other_macs), "--out", str(out)], out, capsys, "result.parquet",
           "field 'num_positions'")
    front_out = tmp_path / "front.parquet"
    _fails(["front", str(result), "--out", str(front_out)], front_out, capsys, "result.parquet",
           "field 'relative_macs'")
