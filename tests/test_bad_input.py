"""Bad input, faults and misuse: nothing silently wrong, no input destroyed, one-line errors.

Each test pins a defect found by trying the CLI and the seed API as users would: the command
must refuse (exit status 2, one line naming the file and the field, nothing written) or give the
right result, never a plausible wrong one.
"""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyce.cli import main
from dyce.config_search import search_and_eval
from dyce.errors import DyceError
from dyce.evaluate.exact import evaluate_config
from dyce.io import write_json
from dyce.records.format import read_records, write_records
from dyce.records.recorder import OutputRecorder
from dyce.report.tables import read_table, write_table
from dyce.search.lambda_grid import MAX_LAMBDAS, lambda_range
from tests.synthetic import make_synthetic_macs, make_synthetic_records


@pytest.fixture
def files(tmp_path):
    """Search and validation records (Parquet) and the matching macs_info."""
    paths = {"train": tmp_path / "train.parquet", "val": tmp_path / "val.parquet",
             "macs": tmp_path / "macs.json"}
    write_records(paths["train"], make_synthetic_records(300, 4, 2, 10, seed=1, model="net",
                                                         dataset="toy", split="search"))
    write_records(paths["val"], make_synthetic_records(250, 4, 2, 10, seed=2, model="net",
                                                       dataset="toy", split="val"))
    write_json(paths["macs"], make_synthetic_macs(4, 2))
    return {k: str(v) for k, v in paths.items()}


def _fails(argv, capsys, *expected, out=None) -> str:
    """``main(argv)`` exits 2 with one stderr line holding ``expected``; nothing at ``out``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    if out is not None:
        out = type(out)(out)
        assert not list(out.parent.glob(f".{out.name}*")), "temporary file left behind"
    return err


def _search(files, tmp_path, *extra) -> str:
    out = tmp_path / "search.parquet"
    assert main(["search", files["train"], "--macs-info", files["macs"], "--method", "onepass",
                 "--lambda", "0.8", "0.9", "0.95", "1.0", "--no-progress", *extra,
                 "--out", str(out)]) == 0
    return str(out)


# --------------------------------------------------------------------------- 1: head names


def test_macs_info_with_heads_in_another_order_is_refused_naming_both_lists(files, tmp_path,
                                                                            capsys):
    swapped = make_synthetic_macs(4, 2)
    swapped["head"].reverse()  # same count, other order: every head's MACs would be wrong
    write_json(tmp_path / "swapped.json", swapped)
    out = tmp_path / "out.parquet"
    err = _fails(["search", files["train"], "--macs-info", str(tmp_path / "swapped.json"),
                  "--method", "onepass", "--lambda", "0.9", "--out", str(out)], capsys,
                 "field 'exit_types'", "['mlp1x1000', 'mlp3x500']", "['mlp3x500', 'mlp1x1000']",
                 out=out)
    assert "swapped.json" in err and not out.exists()
    searched = _search(files, tmp_path)
    _fails(["evaluate", searched, "--records", files["val"], "--macs-info",
            str(tmp_path / "swapped.json"), "--out", str(out)], capsys, "field 'exit_types'",
           out=out)
    with pytest.raises(DyceError, match="exit_types"):
        evaluate_config(read_records(files["val"]), swapped, [[0, 0.5]] * 3)


def test_macs_info_without_head_names_is_matched_by_position(files):
    unnamed = make_synthetic_macs(4, 2)
    for head in unnamed["head"]:
        del head["name"]
    records = read_records(files["val"])
    named = evaluate_config(records, make_synthetic_macs(4, 2), [[1, 0.5]] * 3)
    assert evaluate_config(records, unnamed, [[1, 0.5]] * 3).raw_macs == named.raw_macs


# --------------------------------------------------------------------------- 2, 13: λ grids


def test_seed_default_grid_ends_at_exactly_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for split, seed in (("train", 11), ("val", 12)):
        records = make_synthetic_records(200, 4, 2, 10, seed=seed)
        np.savez(tmp_path / f"{split}.npz", label=records.labels.reshape(-1, 1),
                 preds=records.preds, confs=records.confs)
    search_and_eval("run", make_synthetic_macs(4, 2), "train.npz", "val.npz", save_dir="out",
                    method="samethres")
    lambdas = pl.read_csv(tmp_path / "out" / "unfiltered" / "run_samethres.csv")["lambda"]
    assert lambdas.max() == 1.0 and lambdas.len() == 51
    assert sorted(lambdas.to_list()) == [i / 100 for i in range(50, 101)]


@given(start=st.integers(0, 200), step=st.integers(1, 50), count=st.integers(0, 300),
       places=st.integers(1, 4))
def test_grid_values_are_the_exact_decimals_and_include_a_reached_stop(start, step, count,
                                                                       places):
    scale = Decimal(10) ** -places
    start_d, step_d = start * scale, step * scale
    stop_d = start_d + count * step_d
    values = lambda_range(float(start_d), float(stop_d), float(step_d))
    assert values == [float(start_d + i * step_d) for i in range(count + 1)]
    below = lambda_range(float(start_d), float(stop_d), float(step_d), include_stop=False)
    assert below == values[:-1]


def test_cli_and_config_share_one_range_rule(files, tmp_path):
    out = _search(files, tmp_path)  # explicit λ
    assert main(["search", files["train"], "--macs-info", files["macs"], "--method", "samethres",
                 "--lambda-range", "0.5", "1.0", "0.1", "--no-progress", "--out", out]) == 0
    assert read_table(out)[0]["lambda"].to_list() == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


@pytest.mark.parametrize("grid", [["0", "1", "1e-9"], ["0", "1e308", "1"]])
def test_a_huge_lambda_grid_is_refused_before_any_work(files, tmp_path, capsys, grid):
    out = tmp_path / "out.parquet"
    _fails(["search", files["train"], "--macs-info", files["macs"], "--method", "onepass",
            "--lambda-range", *grid, "--out", str(out)], capsys, "field 'lambda-range'",
           f"maximum {MAX_LAMBDAS}", out=out)
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-0.5"])
def test_a_non_finite_or_negative_lambda_is_refused(files, tmp_path, capsys, value):
    out = tmp_path / "out.parquet"
    _fails(["search", files["train"], "--macs-info", files["macs"], "--method", "onepass",
            "--lambda", value, "--out", str(out)], capsys, "field 'lambda'", out=out)


# --------------------------------------------------------------------------- 5, 11: tables


def _evaluated(files, tmp_path) -> str:
    out = tmp_path / "eval.parquet"
    assert main(["evaluate", _search(files, tmp_path), "--records", files["val"],
                 "--macs-info", files["macs"], "--no-progress", "--out", str(out)]) == 0
    return str(out)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_tables_with_nan_or_infinite_figures_are_refused(files, tmp_path, capsys, value):
    table, metadata = read_table(_evaluated(files, tmp_path))
    broken = tmp_path / "broken.parquet"
    write_table(table.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(value)
                                   .otherwise(pl.col("relative_acc")).alias("relative_acc")),
                broken, metadata)
    for command in (["summary"], ["front"], ["plot", "--records", files["val"], "--macs-info",
                                             files["macs"]]):
        out = tmp_path / ("out.png" if command[0] == "plot" else "out.parquet")
        _fails([command[0], str(broken), *command[1:], "--out", str(out)], capsys,
               "broken.parquet", "field 'relative_acc'", "row 1", out=out)
        assert not out.exists()


def test_front_validates_before_writing_anything(files, tmp_path, capsys):
    table, metadata = read_table(_evaluated(files, tmp_path))
    broken = tmp_path / "text.parquet"
    write_table(table.with_columns(pl.col("relative_acc").cast(pl.String)), broken, metadata)
    out, csv = tmp_path / "front.parquet", tmp_path / "front.csv"
    _fails(["front", str(broken), "--out", str(out), "--csv", str(csv)], capsys,
           "field 'relative_acc'", out=out)
    assert not out.exists() and not csv.exists()


@pytest.mark.parametrize("command", ["front", "summary", "plot"])
def test_every_tolerance_option_has_the_same_range(files, tmp_path, capsys, command):
    evaluated = _evaluated(files, tmp_path)
    out = tmp_path / ("out.png" if command == "plot" else "out.parquet")
    extra = ["--records", files["val"], "--macs-info", files["macs"]] if command == "plot" else []
    _fails([command, evaluated, *extra, "--tolerance", "5", "--out", str(out)], capsys,
           "field 'tolerance'", out=out)
    assert not out.exists()


# --------------------------------------------------------------------------- 7: seed cache


@pytest.fixture
def seed_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for split, seed in (("train", 11), ("val", 12)):
        records = make_synthetic_records(200, 4, 2, 10, seed=seed)
        np.savez(tmp_path / f"{split}.npz", label=records.labels.reshape(-1, 1),
                 preds=records.preds, confs=records.confs)
    return dict(sim_index="run", macs_info=make_synthetic_macs(4, 2),
                train_record_path="train.npz", val_record_path="val.npz",
                search_range=[0.8, 1.01], search_step=0.05, save_dir="out", method="onepass")


def test_a_truncated_cached_result_is_searched_again(seed_files, tmp_path):
    first = search_and_eval(**seed_files)
    csv = tmp_path / "out" / "run_onepass.csv"
    csv.write_text(csv.read_text().splitlines()[0] + "\n")  # header only: "0 rows"
    again = search_and_eval(**seed_files)
    assert again.height == first.height > 0
    assert pl.read_csv(csv).height == first.height


def test_a_cached_result_of_other_records_is_not_reused(seed_files, tmp_path):
    first = search_and_eval(**seed_files)
    other = make_synthetic_records(200, 4, 2, 10, seed=99)
    np.savez(tmp_path / "train.npz", label=other.labels.reshape(-1, 1), preds=other.preds,
             confs=other.confs)
    again = search_and_eval(**seed_files)
    assert again["relative_macs_tr"].to_list() != first["relative_macs_tr"].to_list()


def test_a_bad_val_record_fails_before_the_search(seed_files, tmp_path, monkeypatch):
    (tmp_path / "val.npz").write_bytes(b"PK\x03\x04 not really a zip")

    def no_search(*args, **kwargs):
        raise AssertionError("searched before checking the val record")

    monkeypatch.setattr("dyce.search.candidates.search_candidates", no_search)
    with pytest.raises(DyceError, match="val.npz"):
        search_and_eval(**seed_files)


# --------------------------------------------------------------------------- 8: chance level


def test_a_chance_level_backbone_is_flagged_in_the_log_and_the_summary(tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = {}
    for split, seed in (("search", 1), ("val", 2)):
        records = make_synthetic_records(400, 4, 2, 10, seed=seed, model="net", dataset="toy")
        records = dataclasses.replace(records, labels=rng.integers(0, 10, 400))  # ~0.1 right
        paths[split] = tmp_path / f"{split}.parquet"
        write_records(paths[split], records)
    write_json(tmp_path / "macs.json", make_synthetic_macs(4, 2))
    common = ["--macs-info", str(tmp_path / "macs.json"), "--no-progress"]
    assert main(["search", str(paths["search"]), *common, "--method", "onepass", "--lambda",
                 "0.9", "--out", str(tmp_path / "s.parquet")]) == 0
    assert "near chance level" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--records", str(paths["val"]),
                 *common, "--out", str(tmp_path / "e.parquet")]) == 0
    assert main(["front", str(tmp_path / "e.parquet"), "--out",
                 str(tmp_path / "f.parquet")]) == 0
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "f.parquet"), "--out",
                 str(tmp_path / "summary.csv")]) == 0
    assert "near chance level" in capsys.readouterr().out
    summary = pl.read_csv(tmp_path / "summary.csv")
    assert "near chance level" in summary["warning"][0]


def test_a_good_backbone_gets_no_warning(files, tmp_path, capsys):
    _evaluated(files, tmp_path)
    assert "WARNING" not in capsys.readouterr().err


# --------------------------------------------------------------------------- 9: --out = input


def test_out_equal_to_an_input_is_refused_and_the_input_kept(files, tmp_path, capsys):
    val_bytes = open(files["val"], "rb").read()
    searched = _search(files, tmp_path)
    _fails(["evaluate", searched, "--records", files["val"], "--macs-info", files["macs"],
            "--out", files["val"]], capsys, "field 'out'", "is also an input")
    assert open(files["val"], "rb").read() == val_bytes
    searched_bytes = open(searched, "rb").read()
    _fails(["search", files["train"], "--macs-info", files["macs"], "--method", "onepass",
            "--out", str(tmp_path / "." / "train.parquet")], capsys, "field 'out'")
    _fails(["front", searched, "--out", searched], capsys, "field 'out'")
    assert open(searched, "rb").read() == searched_bytes
    records = make_synthetic_records(50, 4, 2, 10, seed=3)
    npz = tmp_path / "X.npz"
    np.savez(npz, label=records.labels, preds=records.preds, confs=records.confs)
    npz_bytes = npz.read_bytes()
    _fails(["import-npz", str(npz), "--exit-types", "a,b", "--out", str(npz)], capsys,
           "field 'out'")
    assert npz.read_bytes() == npz_bytes


# --------------------------------------------------------------------------- 14: OS errors


def test_out_that_is_a_folder_or_under_a_file_is_one_line(files, tmp_path, capsys):
    searched = _evaluated(files, tmp_path)
    (tmp_path / "folder").mkdir()
    _fails(["front", searched, "--out", str(tmp_path / "folder")], capsys, "is a folder")
    _fails(["front", searched, "--out", str(tmp_path / "train.parquet" / "x.parquet")], capsys,
           "parent is not a folder")


def test_an_os_error_while_writing_is_one_line_and_leaves_nothing(files, tmp_path, capsys,
                                                                   monkeypatch):
    import errno

    def disk_full(self, path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full)
    out = tmp_path / "out.parquet"
    _fails(["search", files["train"], "--macs-info", files["macs"], "--method", "onepass",
            "--lambda", "0.9", "--no-progress", "--out", str(out)], capsys,
           "No space left on device", out=out)
    assert not out.exists()


def test_plot_with_an_unknown_image_suffix_is_refused(files, tmp_path, capsys):
    evaluated = _evaluated(files, tmp_path)
    out = tmp_path / "p.xyz"
    _fails(["plot", evaluated, "--records", files["val"], "--macs-info", files["macs"],
            "--out", str(out)], capsys, "p.xyz", "cannot write a .xyz image", out=out)


def test_npz_whose_members_are_not_npy_is_one_line(tmp_path, capsys):
    import zipfile

    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as archive:
        for name in ("label", "preds", "confs"):
            archive.writestr(name, "not an array")
    _fails(["import-npz", str(bad), "--exit-types", "a,b", "--out",
            str(tmp_path / "out.parquet")], capsys, "bad.npz", "not a .npy array")


def test_import_npz_of_a_parquet_file_says_what_it_is(files, tmp_path, capsys):
    err = _fails(["import-npz", files["val"], "--exit-types", "a,b", "--out",
                  str(tmp_path / "out.parquet")], capsys, "val.parquet", "Parquet")
    assert "pickle" not in err


# --------------------------------------------------------------------------- 15: recorder


def test_recorder_keeps_the_layout_of_earlier_batches_for_a_last_batch_of_n_samples():
    rng = np.random.default_rng(0)
    num_exits, classes = 3, 5
    recorder = OutputRecorder()
    for batch in (8, 3):  # the last partial batch has B == N == 3
        logits = rng.standard_normal((batch, classes)).astype(np.float32)
        recorder.add_pred(logits, rng.standard_normal((batch, num_exits, classes)))
        recorder.add_label(rng.integers(0, classes, batch))
    records = recorder.to_records()
    assert records.num_samples == 11 and records.num_exits == num_exits + 1
