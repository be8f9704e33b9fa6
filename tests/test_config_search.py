"""Seed API ``search_and_eval`` used as the original README shows, on OutputRecorder-style .npz."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from dyce.config_search import search_and_eval
from dyce.errors import DyceError
from dyce.results import SEED_COLUMNS, pareto_front
from dyce.strategies import evaluate_any
from tests.synthetic import make_synthetic_macs, make_synthetic_records


def save_like_output_recorder(path, records) -> None:
    """What the original ``OutputRecorder.save`` writes: label ``(N, 1)`` int16, preds int16 and
    float32 confs ``((P-1)*T+1, N, topk)``, position-major, final head last."""
    np.savez_compressed(
        path,
        label=records.labels.reshape(-1, 1).astype(np.int16),
        confs=records.confs.astype(np.float32),
        preds=records.preds.astype(np.int16),
    )


@pytest.fixture
def seed_setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train = make_synthetic_records(300, 4, 2, 10, topk=2, seed=11)
    val = make_synthetic_records(200, 4, 2, 10, topk=2, seed=12)
    save_like_output_recorder(tmp_path / "train.npz", train)
    save_like_output_recorder(tmp_path / "val.npz", val)
    return train, val, make_synthetic_macs(4, 2)


def test_search_and_eval_as_in_the_readme(seed_setup, tmp_path):
    train, val, macs_info = seed_setup
    front = search_and_eval(
        sim_index="dyce_resnet50",
        macs_info=macs_info,
        train_record_path="train.npz",
        val_record_path="val.npz",
    )
    out = tmp_path / "eval" / "sim_results"
    front_csv = pl.read_csv(out / "dyce_resnet50_onepass.csv")
    all_csv = pl.read_csv(out / "unfiltered" / "dyce_resnet50_onepass.csv")
    assert tuple(front_csv.columns) == SEED_COLUMNS == tuple(all_csv.columns)
    assert pl.read_parquet(out / "dyce_resnet50_onepass.parquet").equals(front)
    assert pl.read_parquet(out / "unfiltered" / "dyce_resnet50_onepass.parquet").height == 51

    # One row per λ of np.arange(0.5, 1.01, 0.01), sorted by validation MACs.
    assert sorted(all_csv["lambda"].to_list()) == pytest.approx(list(np.arange(0.5, 1.01, 0.01)))
    macs = all_csv["relative_macs"].to_list()
    assert macs == sorted(macs)
    assert front_csv["relative_macs"].to_list() == pareto_front(all_csv)["relative_macs"].to_list()
    assert tuple(front.columns) == SEED_COLUMNS

    # Figures: validation columns on val.npz, *_tr columns on train.npz, each exact.
    final_val = float(np.mean(val.preds[-1, :, 0] == val.labels))
    for row in all_csv.iter_rows(named=True):
        config = json.loads(row["config"])
        assert len(config) == 3
        on_val = evaluate_any(val, macs_info, config)
        on_train = evaluate_any(train, macs_info, config)
        assert row["relative_macs"] == pytest.approx(on_val.relative_macs, rel=1e-12)
        assert row["relative_acc"] == pytest.approx(on_val.relative_acc, rel=1e-12)
        assert row["raw_acc"] == pytest.approx(on_val.relative_acc * final_val, rel=1e-12)
        assert row["raw_macs"] == pytest.approx(on_val.relative_macs * 4_100_000_000, rel=1e-12)
        assert row["relative_macs_tr"] == pytest.approx(on_train.relative_macs, rel=1e-12)
        assert row["relative_acc_tr"] == pytest.approx(on_train.relative_acc, rel=1e-12)
        assert json.loads(row["exit_ratio"]) == pytest.approx(list(on_val.exit_ratio))


def test_existing_result_is_reused_unless_refresh(seed_setup, tmp_path):
    _, _, macs_info = seed_setup
    macs_path = tmp_path / "macs.json"
    macs_path.write_text(json.dumps(macs_info))
    kwargs = dict(sim_index="run", macs_info=str(macs_path), train_record_path="train.npz",
                  val_record_path="val.npz", search_range=[0.8, 1.0], search_step=0.1,
                  save_dir="results", method="samethres", device="cpu")
    first = search_and_eval(**kwargs)
    assert (tmp_path / "results" / "run_samethres.csv").exists()
    (tmp_path / "train.npz").unlink()
    # Not refreshed: the saved front is read back, the (now missing) record is not touched.
    again = search_and_eval(**kwargs)
    assert again["relative_macs"].to_list() == first["relative_macs"].to_list()
    with pytest.raises(DyceError, match="train.npz"):
        search_and_eval(**kwargs, refresh=True)


def test_unknown_method_is_an_error(seed_setup):
    with pytest.raises(DyceError, match="method"):
        search_and_eval("x", seed_setup[2], "train.npz", "val.npz", method="greedy")
