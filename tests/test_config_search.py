"""Seed API ``search_and_eval`` used as the original README shows, on OutputRecorder-style .npz."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from dyce.config_search import search_and_eval
from dyce.errors import DyceError
from dyce.evaluate.strategies import evaluate_any
from dyce.report.tables import SEED_COLUMNS, pareto_front
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
        candidates="searched",  # the original release's output: one row per λ
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


def test_existing_result_is_reused_unless_refresh(seed_setup, tmp_path, monkeypatch):
    _, _, macs_info = seed_setup
    macs_path = tmp_path / "macs.json"
    macs_path.write_text(json.dumps(macs_info))
    kwargs = dict(sim_index="run", macs_info=str(macs_path), train_record_path="train.npz",
                  val_record_path="val.npz", search_range=[0.8, 1.0], search_step=0.1,
                  save_dir="results", method="samethres", device="cpu")
    first = search_and_eval(**kwargs)
    assert (tmp_path / "results" / "run_samethres.csv").exists()

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    # Same inputs, not refreshed: the saved front is read back without searching.
    monkeypatch.setattr("dyce.search.candidates.search_candidates", no_search)
    again = search_and_eval(**kwargs)
    assert again["relative_macs"].to_list() == first["relative_macs"].to_list()
    with pytest.raises(AssertionError, match="searched again"):
        search_and_eval(**kwargs, refresh=True)
    (tmp_path / "train.npz").unlink()
    with pytest.raises(DyceError, match="train.npz"):
        search_and_eval(**kwargs)


def test_unknown_method_is_an_error(seed_setup):
    with pytest.raises(DyceError, match="method"):
        search_and_eval("x", seed_setup[2], "train.npz", "val.npz", method="greedy")


def test_seed_readme_two_steps_with_output_recorder(tmp_path, monkeypatch):
    """Step 1 records with OutputRecorder (which knows no exit types), step 2 searches with a
    macs_info of T types: the exits are regrouped by the macs_info as the original did."""
    torch = pytest.importorskip("torch")
    from dyce.utils import OutputRecorder

    monkeypatch.chdir(tmp_path)
    num_types, num_positions, num_classes = 2, 4, 6
    reference = {}
    for split, seed in (("train", 0), ("val", 1)):
        generator = torch.Generator().manual_seed(seed)
        recorder = OutputRecorder(topk=1)
        for _batch in range(3):
            targets = torch.randint(0, num_classes, (20,), generator=generator)
            hint = torch.nn.functional.one_hot(targets, num_classes).float()
            model_out = torch.randn(20, num_classes, generator=generator) + 3 * hint
            depth = torch.linspace(0.5, 3, (num_positions - 1) * num_types)[None, :, None]
            ee_out = torch.randn(20, (num_positions - 1) * num_types, num_classes,
                                 generator=generator) + depth * hint[:, None, :]
            recorder.add_pred(model_out, ee_out)
            recorder.add_label(targets.unsqueeze(-1))
        recorder.save(f"{split}_record.parquet", meta_info=None)
        reference[split] = recorder.to_records(exit_types=["mlp1x1000", "mlp3x500"])
    macs_info = make_synthetic_macs(num_positions, num_types)

    front = search_and_eval(
        sim_index="dyce_resnet50", macs_info=macs_info,
        train_record_path="train_record.parquet", val_record_path="val_record.parquet",
    )
    assert front.height >= 1
    for row in front.iter_rows(named=True):
        config = json.loads(row["config"])
        assert len(config) == num_positions - 1
        expected = evaluate_any(reference["val"], macs_info, config)
        assert row["relative_macs"] == expected.relative_macs
        assert row["raw_acc"] == expected.raw_acc


def test_search_and_eval_default_adds_candidates_to_every_lambda(seed_setup, tmp_path):
    train, val, macs_info = seed_setup
    front = search_and_eval(sim_index="dense", macs_info=macs_info,
                            train_record_path="train.npz", val_record_path="val.npz")
    everything = pl.read_csv(tmp_path / "eval" / "sim_results" / "unfiltered" / "dense_onepass.csv")
    assert tuple(everything.columns) == (*SEED_COLUMNS, "candidate")
    assert everything.height > 51
    assert everything.filter(pl.col("candidate") == "searched").height == 51
    assert everything.select("lambda", "candidate").is_unique().all()
    assert front.height == pareto_front(everything).height
    for row in everything.sample(40, seed=0).iter_rows(named=True):
        on_val = evaluate_any(val, macs_info, json.loads(row["config"]))
        assert (row["relative_macs"], row["relative_acc"]) == (on_val.relative_macs,
                                                               on_val.relative_acc)
