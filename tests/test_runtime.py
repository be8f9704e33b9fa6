"""The runtime: real early exiting must reproduce, sample by sample, what the records predict."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from dyce.cli import main as dyce_main
from dyce.data.splits import load_split, prepare_splits
from dyce.errors import DyceError
from dyce.evaluate.exact import evaluate_config, position_macs
from dyce.evaluate.strategies import evaluate_any, global_threshold, patience
from dyce.macs.info import load_macs_info
from dyce.network.models import MultiExitNetwork, build_backbone, save_exits_checkpoint
from dyce.records.format import read_records
from dyce.records.recording import record_split
from dyce.report.tables import evaluate_table, pareto_front, read_table, search_table, write_table
from dyce.runtime.inference import EarlyExitRuntime, build_bundle, load_bundle
from dyce.search import search_configs

EXIT_TYPES = ("mlp1x1000", "mlp3x500")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _macs_info(num_positions: int) -> dict:
    """A MACs table shaped like the network's (cumulative backbone, cheap heads)."""
    backbone = [1_000_000 * (p + 1) for p in range(num_positions - 1)]
    return {
        "head": [
            {"name": name, "macs": [500 * (k + 1) * (p + 1) for p in range(num_positions - 1)] + [0]}
            for k, name in enumerate(EXIT_TYPES)
        ],
        "backbone": {"name": "small_resnet14", "macs": [*backbone, 1_000_000 * num_positions],
                     "ori_macs": 1_000_000 * num_positions},
    }


def _midpoint_thresholds(confs: np.ndarray, quantiles) -> list[float]:
    """Thresholds halfway between two adjacent distinct recorded confidences near ``quantiles``.

    CPU kernels round differently for different batch sizes (MKL's GEMM below ~16 rows, oneDNN's
    convolution for 1-2 rows), so a confidence computed in the runtime's shrinking batches can
    differ from the recorded one in the last bit. Keeping thresholds away from every recorded
    confidence (by half a gap, far more than a rounding step) makes the exit decisions exactly
    comparable; the confidences themselves are compared to within 4 float32 ulps.
    """
    values = np.unique(confs.astype(np.float64))
    picks = np.clip(np.round(np.asarray(quantiles) * (len(values) - 1)).astype(int), 0,
                    len(values) - 2)
    return [float((values[i] + values[i + 1]) / 2) for i in picks]


def _mixed_configs(records, rng: np.random.Generator, count: int) -> list[list[list[float]]]:
    """DyCE-like configurations: a type (or none) per position, its own threshold at each."""
    configs = []
    for _ in range(count):
        config = []
        for position in range(records.num_positions - 1):
            exit_type = int(rng.integers(-1, len(EXIT_TYPES)))
            if exit_type < 0:
                config.append([-1, 1.0])
                continue
            confs = records.top1_confs[records.exit_index(position, exit_type)]
            config.append([exit_type, _midpoint_thresholds(confs, [rng.uniform(0.5, 0.95)])[0]])
        configs.append(config)
    return configs


@pytest.fixture(scope="module")
def setup(tmp_path_factory, one_torch_thread) -> dict:
    """A random-weight small_resnet14 with 2 exit types on digits, its records, front, bundle."""
    folder = tmp_path_factory.mktemp("runtime")
    torch.manual_seed(0)
    splits = prepare_splits("digits", seed=0)
    backbone = build_backbone("small_resnet14", num_classes=10, in_channels=1, input_size=8)
    net = MultiExitNetwork(backbone, "auto", list(EXIT_TYPES), 10, input_size=8, in_channels=1,
                           model_name="small_resnet14", device="cpu")
    save_exits_checkpoint(folder / "exits.pt", net)
    records = {}
    for split in ("search", "val"):
        record_split(net, load_split(splits, split), topk=1, batch_size=64, device="cpu",
                     out_path=folder / f"{split}.parquet", model="small_resnet14",
                     dataset_name="digits", split=split)
        records[split] = read_records(folder / f"{split}.parquet")
    num_positions = records["val"].num_positions
    macs = _macs_info(num_positions)
    (folder / "macs.json").write_text(json.dumps(macs))

    # Front 1: a peer strategy (global threshold) over the spread of the recorded confidences.
    search = records["search"]
    thresholds = _midpoint_thresholds(search.top1_confs[:-1], [0.3, 0.6, 0.8, 0.95])
    results = global_threshold(search, macs, thresholds=thresholds, progress=False)
    table = evaluate_table(search_table(results, method="global_threshold"), records["val"], macs)
    write_table(table, folder / "front_global.parquet")
    # Front 2: DyCE's own search (onepass over a few λ), evaluated on val, Pareto-filtered.
    searched = search_configs(search, macs, "onepass", [0.6, 0.8, 0.9, 0.95, 0.99, 1.0],
                              progress=False)
    table = evaluate_table(search_table(searched, method="onepass"), records["val"], macs)
    write_table(pareto_front(table), folder / "front_onepass.parquet")
    write_table(table, folder / "searched_onepass.parquet")  # every λ, for set_lambda
    # Front 3: varied per-position configurations by hand, tagged with a λ.
    configs = _mixed_configs(search, np.random.default_rng(1), 6)
    rows = []
    for lam, config in zip(np.linspace(0.5, 1.0, len(configs)), configs, strict=True):
        evaluation = evaluate_config(records["val"], macs, config)
        rows.append({"method": "handmade", "lambda": float(lam), "parameter_name": "lambda",
                     "parameter": float(lam), "config": json.dumps(config),
                     "relative_macs": evaluation.relative_macs,
                     "relative_acc": evaluation.relative_acc})
    pl.DataFrame(rows).write_parquet(folder / "front_handmade.parquet")
    # Front 4: patience (PABEE), decided by repeated classes rather than thresholds.
    results = patience(search, macs, exit_types=[1], patiences=[1, 2, 3], progress=False)
    table = evaluate_table(search_table(results, method="patience"), records["val"], macs)
    write_table(table, folder / "front_patience.parquet")
    fronts = [folder / f"front_{name}.parquet"
              for name in ("global", "onepass", "handmade", "patience")]
    summary = build_bundle(folder / "exits.pt", fronts, folder / "macs.json",
                           folder / "bundle.pt",
                           searched_tables=[folder / "searched_onepass.parquet"])
    (folder / "splits.json").write_text(json.dumps(splits))
    val = load_split(splits, "val")
    images = torch.stack([val[i][0] for i in range(len(val))])
    return {"folder": folder, "splits": splits, "net": net, "records": records, "macs": macs,
            "fronts": fronts, "summary": summary, "images": images,
            "runtime": EarlyExitRuntime.load(folder / "bundle.pt", device="cpu")}


def _run(runtime: EarlyExitRuntime, images: torch.Tensor, batch_size: int):
    outputs = [runtime(images[i: i + batch_size]) for i in range(0, len(images), batch_size)]
    return {name: torch.cat([getattr(o, name) for o in outputs]).numpy()
            for name in ("predictions", "exit_position", "macs", "confidence")}


@pytest.mark.parametrize("batch_size", [37, 360])
def test_every_front_configuration_matches_the_evaluator_sample_by_sample(setup, batch_size):
    runtime, records = setup["runtime"], setup["records"]["val"]
    macs = load_macs_info(setup["macs"])
    assert len(runtime.front) > 6
    exits_seen, patience_left = set(), False
    for index, entry in enumerate(runtime.front):
        runtime.set_config(index)
        assert runtime.current is entry
        out = _run(runtime, setup["images"], batch_size)
        expected = evaluate_any(records, macs, entry.as_config(), per_sample=True)
        np.testing.assert_array_equal(out["exit_position"], expected.exit_position)
        np.testing.assert_array_equal(out["predictions"], expected.prediction)
        # The confidence each sample left with is the recorded one (up to batch-size rounding).
        rows = [records.exit_index(p, entry.config[p][0]) if p < records.num_positions - 1
                else records.num_exits - 1 for p in out["exit_position"]]
        recorded = records.top1_confs[rows, np.arange(records.num_samples)]
        np.testing.assert_array_max_ulp(out["confidence"], recorded, maxulp=4)
        np.testing.assert_array_equal(
            out["macs"], position_macs(macs, entry.config)[out["exit_position"]])
        accuracy = float(np.mean(out["predictions"] == records.labels))
        assert accuracy == pytest.approx(expected.raw_acc, abs=1e-12)
        assert out["macs"].mean() / macs.ori_macs == pytest.approx(expected.relative_macs, rel=1e-12)
        exits_seen.update(np.unique(out["exit_position"]).tolist())
        patience_left |= entry.patience is not None and bool(np.any(out["exit_position"] < 5))
    assert len(exits_seen) >= 3  # samples really left at several positions
    assert patience_left


def test_samples_that_left_are_not_run_by_later_stages(setup):
    runtime = setup["runtime"]
    entry = max(runtime.front, key=lambda e: len(e.enabled_positions))
    runtime.set_config(entry)
    rows_seen = [0] * len(runtime.stages)
    hooks = [stage.register_forward_hook(
        lambda _m, inputs, _o, i=i: rows_seen.__setitem__(i, rows_seen[i] + inputs[0].shape[0]))
        for i, stage in enumerate(runtime.stages)]
    try:
        out = runtime(setup["images"])
    finally:
        for hook in hooks:
            hook.remove()
    positions = out.exit_position.numpy()
    for stage_index in range(len(runtime.stages)):
        # Stage s runs on the samples that have not left at any position < s.
        assert rows_seen[stage_index] == int(np.sum(positions >= stage_index))
    assert rows_seen[-1] < len(positions)


def test_bundle_keeps_only_the_exit_heads_the_front_uses(setup):
    payload = load_bundle(setup["folder"] / "bundle.pt")
    used = {(p, k) for entry in payload["front"] for p, (k, _t) in enumerate(entry["config"])
            if k >= 0}
    stored = {(h["position"], h["exit_type"]) for h in payload["exit_heads"]}
    assert stored == used
    assert payload["macs_info"] == setup["macs"]
    assert len(payload["front"]) == sum(len(pl.read_parquet(f)) for f in setup["fronts"])
    handmade = [e for e in payload["front"] if e["method"] == "handmade"]
    assert handmade[-1]["lambda_value"] == pytest.approx(1.0)
    assert any(e["method"] == "onepass" for e in payload["front"])
    assert [e["patience"] for e in payload["front"] if e["method"] == "patience"] == [1, 2, 3]
    # A head outside the bundle cannot be activated by hand.
    runtime = setup["runtime"]
    num_positions = runtime.num_positions
    missing = sorted({(p, k) for p in range(num_positions - 1) for k in range(2)} - stored)
    if missing:
        p, k = missing[0]
        config = [[-1, 1.0]] * (num_positions - 1)
        config[p] = [k, 0.5]
        with pytest.raises(DyceError, match="not in the bundle"):
            runtime.set_config(config)


def test_macs_table_that_does_not_match_the_network_is_rejected(setup, tmp_path):
    folder = setup["folder"]
    fewer = _macs_info(setup["records"]["val"].num_positions - 1)
    (tmp_path / "fewer.json").write_text(json.dumps(fewer))
    with pytest.raises(DyceError, match=r"fewer\.json.*backbone\.macs.*positions"):
        build_bundle(folder / "exits.pt", setup["fronts"], tmp_path / "fewer.json",
                     tmp_path / "b.pt")
    renamed = json.loads(json.dumps(setup["macs"]))
    renamed["head"][1]["name"] = "mlp5x1000"
    (tmp_path / "renamed.json").write_text(json.dumps(renamed))
    with pytest.raises(DyceError, match=r"renamed\.json.*'head'.*mlp5x1000"):
        build_bundle(folder / "exits.pt", setup["fronts"], tmp_path / "renamed.json",
                     tmp_path / "b.pt")
    named = json.loads(json.dumps(setup["macs"]))
    named["backbone"]["positions"] = ["layer1.0", "layer9", "x", "y", "z", "final"]
    (tmp_path / "named.json").write_text(json.dumps(named))
    with pytest.raises(DyceError, match=r"named\.json.*backbone\.positions.*layer9"):
        build_bundle(folder / "exits.pt", setup["fronts"], tmp_path / "named.json",
                     tmp_path / "b.pt")
    assert not (tmp_path / "b.pt").exists()


def test_front_with_a_config_of_the_wrong_length_is_rejected(setup, tmp_path):
    bad = pl.DataFrame({"config": [json.dumps([[0, 0.5]])], "relative_macs": [0.5],
                        "relative_acc": [0.9], "method": ["onepass"]})
    bad.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DyceError, match=r"bad\.parquet.*config \(row 0\)"):
        build_bundle(setup["folder"] / "exits.pt", tmp_path / "bad.parquet",
                     setup["folder"] / "macs.json", tmp_path / "b.pt")


def test_budget_picks_the_most_accurate_affordable_configuration(setup):
    runtime = setup["runtime"]
    front = runtime.front
    for budget in sorted({e.relative_macs for e in front if e.relative_macs < 1.0}):
        chosen = runtime.set_budget(budget)
        affordable = [e for e in front if e.relative_macs <= budget]
        assert chosen.relative_macs <= budget
        assert chosen.relative_acc == max(e.relative_acc for e in affordable)
    cheapest = min(front, key=lambda e: e.relative_macs)
    with pytest.raises(DyceError, match=rf"below the cheapest.*#{cheapest.index}"):
        runtime.set_budget(cheapest.relative_macs - 1e-6)


@pytest.mark.parametrize("budget", [1.0, 1.5])
def test_a_full_budget_is_the_original_model_even_with_an_as_accurate_configuration(setup,
                                                                                    budget):
    runtime = setup["runtime"]
    as_accurate = [e for e in runtime.front if e.relative_acc >= 1.0 and e.relative_macs < 1.0]
    assert as_accurate, "the fixture should hold a configuration as accurate as the original"
    assert runtime.set_budget(budget).method == "original"
    assert runtime.current.enabled_positions == []


def test_full_budget_runs_the_plain_backbone_without_stages(setup):
    runtime, net = setup["runtime"], setup["net"]
    runtime.set_config([[-1, 1.0]] * (runtime.num_positions - 1))
    assert runtime.current.method == "original"
    calls = []
    hooks = [s.register_forward_hook(lambda *_: calls.append(1)) for s in runtime.stages]
    try:
        out = runtime(setup["images"][:50])
    finally:
        for hook in hooks:
            hook.remove()
    assert not calls
    with torch.no_grad():
        expected = net.backbone(setup["images"][:50]).argmax(1)
    assert torch.equal(out.predictions, expected)
    assert torch.all(out.exit_position == runtime.num_positions - 1)
    assert torch.all(out.macs == setup["macs"]["backbone"]["ori_macs"])


def test_switching_takes_effect_from_the_next_call_only(setup):
    runtime, records = setup["runtime"], setup["records"]["val"]
    macs = load_macs_info(setup["macs"])
    cheap = min(runtime.front, key=lambda e: e.relative_macs)
    runtime.set_config(cheap)
    images = setup["images"]
    switched = threading.Event()

    def switch_mid_call(*_):
        if not switched.is_set():
            switched.set()
            # as another thread would, while this call is running
            runtime.set_config([[-1, 1.0]] * (runtime.num_positions - 1))

    hook = runtime.stages[0].register_forward_hook(switch_mid_call)
    try:
        during = runtime(images)
    finally:
        hook.remove()
    assert switched.is_set() and runtime.current.method == "original"
    expected = evaluate_config(records, macs, cheap.config, per_sample=True)
    np.testing.assert_array_equal(during.exit_position.numpy(), expected.exit_position)
    after = runtime(images)
    assert torch.all(after.exit_position == runtime.num_positions - 1)


def test_lambda_runs_the_configuration_searched_for_it(setup):
    runtime = setup["runtime"]
    searched = read_table(setup["folder"] / "searched_onepass.parquet")[0]
    front_lambdas = {e.lambda_value for e in runtime.front if e.method == "onepass"}
    assert set(searched["lambda"]) - front_lambdas, "some λ should be filtered off the front"
    for row in searched.iter_rows(named=True):
        chosen = runtime.set_lambda(row["lambda"], method="onepass")
        assert chosen.lambda_value == row["lambda"]
        assert chosen.as_config() == json.loads(row["config"])
    assert runtime.set_lambda(0.905, method="onepass").lambda_value == 0.9  # nearest searched


def test_lambda_without_a_searched_table_accepts_front_rows_only(setup):
    runtime = setup["runtime"]
    lambdas = sorted(e.lambda_value for e in runtime.front if e.method == "handmade")
    chosen = runtime.set_lambda(lambdas[2], method="handmade")
    assert chosen.lambda_value == lambdas[2] and chosen.method == "handmade"
    assert runtime.current is chosen
    with pytest.raises(DyceError, match="not a row of the bundle's front"):
        runtime.set_lambda(lambdas[2] + 0.01, method="handmade")
    with pytest.raises(DyceError, match="no λ configuration of msdnet"):
        runtime.set_lambda(0.7, method="msdnet")
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(DyceError, match="lambda"):
            runtime.set_lambda(bad, method="handmade")


def test_bundle_refuses_tables_of_another_network(setup, tmp_path):
    folder = setup["folder"]
    table, metadata = read_table(folder / "searched_onepass.parquet")
    write_table(table, tmp_path / "other.parquet", {**metadata, "records_model": "resnet18"})
    with pytest.raises(DyceError, match="records_model.*resnet18.*small_resnet14"):
        build_bundle(folder / "exits.pt", [tmp_path / "other.parquet"], folder / "macs.json",
                     tmp_path / "b.pt")
    write_table(table.with_columns(pl.lit("a").alias("model")), tmp_path / "a.parquet")
    write_table(table.with_columns(pl.lit("b").alias("model")), tmp_path / "b.parquet")
    with pytest.raises(DyceError, match="different models: a .*; b "):
        build_bundle(folder / "exits.pt", [tmp_path / "a.parquet", tmp_path / "b.parquet"],
                     folder / "macs.json", tmp_path / "b.pt")
    assert not (tmp_path / "b.pt").exists()


def _brute_force_risk(front, calibration, macs, tolerance, delta, search_losses=None):
    """Index of the front entry ``dyce select``'s procedure picks (None: the original model)."""
    from scipy import stats

    right = [s for s in range(calibration.num_samples)
             if calibration.top1_preds[-1, s] == calibration.labels[s]]
    losses = search_losses or [0.0] * len(front)
    order = sorted(range(len(front)), key=lambda i: (losses[i], -front[i].relative_macs, i))
    passed = []
    for i in order:
        prediction = evaluate_any(calibration, macs, front[i].as_config(),
                                  per_sample=True).prediction
        wrong = sum(int(prediction[s] != calibration.labels[s]) for s in right)
        bound = (1.0 if wrong >= len(right)
                 else stats.beta.ppf(1 - delta, wrong + 1, len(right) - wrong))
        if bound > tolerance:
            break
        evaluation = evaluate_any(calibration, macs, front[i].as_config())
        passed.append((evaluation.relative_macs, -evaluation.relative_acc, len(passed), i))
    passed = [item for item in passed if item[0] < 1.0]  # else the original model is cheaper
    return min(passed)[-1] if passed else None


def test_risk_control_activates_the_selection_of_dyce_select(setup):
    runtime = setup["runtime"]
    calibration = setup["records"]["val"]
    macs = load_macs_info(setup["macs"])
    for tolerance in (0.1, 0.5):
        selection = runtime.set_risk(tolerance, 0.1, calibration, loss="breaks")
        expected = _brute_force_risk(runtime.front, calibration, macs, tolerance, 0.1)
        assert selection.passed == (expected is not None)
        if expected is None:
            assert runtime.current.method == "original"
        else:
            assert runtime.current is runtime.front[expected]
            assert selection.bound <= tolerance and selection.order == "macs"
    assert runtime.set_risk(0.5, 0.1, calibration, loss="breaks").passed


def test_bundle_stores_calibration_records_and_search_losses(setup, tmp_path):
    from dyce.runtime.selection import configuration_losses

    folder = setup["folder"]
    path = tmp_path / "bundle.pt"
    build_bundle(folder / "exits.pt", setup["fronts"], folder / "macs.json", path,
                 calibration_records=folder / "val.parquet",
                 search_records=folder / "search.parquet")
    runtime = EarlyExitRuntime.load(path, device="cpu")
    macs = load_macs_info(setup["macs"])
    search, calibration = setup["records"]["search"], setup["records"]["val"]
    losses = configuration_losses(search, macs, [e.as_config() for e in runtime.front])
    assert [e.search_loss for e in runtime.front] == list(losses)
    assert np.array_equal(runtime.calibration.labels, calibration.labels)
    assert np.array_equal(runtime.calibration.top1_preds, calibration.top1_preds)
    assert np.array_equal(runtime.calibration.top1_confs, calibration.top1_confs)
    stored = runtime.set_risk(0.5, 0.1, loss="breaks")  # the bundle's calib records
    chosen = runtime.current
    given = runtime.set_risk(0.5, 0.1, folder / "val.parquet", loss="breaks")
    assert stored.order == "risk" and stored == given and runtime.current == chosen
    expected = _brute_force_risk(runtime.front, calibration, macs, 0.5, 0.1, list(losses))
    assert chosen == (runtime.front[expected] if expected is not None
                      else runtime.set_config([[-1, 1.0]] * (runtime.num_positions - 1)))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 1, 16, 16), (1, 8, 8)])
def test_wrong_input_shape_is_a_clear_error(setup, shape):
    with pytest.raises(DyceError, match=r"input.*expected a batch \(B, 1, 8, 8\)"):
        setup["runtime"](torch.zeros(shape))


def test_not_a_bundle_is_rejected(tmp_path: Path):
    torch.save({"format": "something"}, tmp_path / "x.pt")
    with pytest.raises(DyceError, match=r"x\.pt.*format"):
        EarlyExitRuntime.load(tmp_path / "x.pt")


def test_a_confidence_equal_to_the_threshold_does_not_leave(setup):
    runtime = setup["runtime"]
    entry = next(e for e in runtime.front if e.enabled_positions)
    position = entry.enabled_positions[0]
    exit_type = entry.config[position][0]
    config = [[-1, 1.0]] * (runtime.num_positions - 1)
    config[position] = [exit_type, 0.0]
    runtime.set_config(config)
    images = setup["images"][:64]
    confidences = runtime(images).confidence.numpy()  # every sample leaves at `position`
    threshold = float(np.sort(confidences)[len(confidences) // 2])
    at_threshold = confidences.astype(np.float64) == threshold
    assert at_threshold.any()
    config[position] = [exit_type, threshold]
    runtime.set_config(config)
    out = runtime(images)  # same batch, so the same confidences at `position`
    left = out.exit_position.numpy() == position
    np.testing.assert_array_equal(left, confidences.astype(np.float64) > threshold)
    assert not left[at_threshold].any()


# --------------------------------------------------------------------------- command line


def test_cli_bundle_and_predict_on_a_split_report_the_evaluated_figures(setup, tmp_path, capsys):
    folder, records = setup["folder"], setup["records"]["val"]
    fronts = [str(f) for f in setup["fronts"]]
    assert dyce_main(["bundle", "--exits", str(folder / "exits.pt"), "--front", *fronts,
                      "--macs-info", str(folder / "macs.json"),
                      "--out", str(tmp_path / "b.pt")]) == 0
    assert "exit heads kept" in capsys.readouterr().out
    runtime = EarlyExitRuntime.load(tmp_path / "b.pt", device="cpu")
    budget = sorted(e.relative_macs for e in runtime.front)[len(runtime.front) // 2]
    entry = runtime.set_budget(budget)
    assert dyce_main(["predict", str(tmp_path / "b.pt"), "--data", str(folder / "splits.json"),
                      "--split", "val", "--budget", str(budget), "--batch-size", "50",
                      "--device", "cpu", "--out", str(tmp_path / "p.parquet")]) == 0
    printed = capsys.readouterr().out
    assert "with data loading" in printed and "inference alone" in printed
    expected = evaluate_config(records, setup["macs"], entry.config, per_sample=True)
    assert f"accuracy: {expected.raw_acc:.4f}" in printed
    assert f"mean relative MACs: {expected.relative_macs:.4f}" in printed
    assert "exit ratios: layer1.0 " in printed
    table = pl.read_parquet(tmp_path / "p.parquet")
    assert table["sample_id"].to_list() == records.sample_ids.tolist()
    np.testing.assert_array_equal(table["exit_position"].to_numpy(), expected.exit_position)
    np.testing.assert_array_equal(table["prediction"].to_numpy(), expected.prediction)


def test_cli_predict_on_an_image_folder(setup, tmp_path, capsys):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(5):
        pixels = np.round(digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"digit{i}.png")
    bundle = str(setup["folder"] / "bundle.pt")
    args = ["predict", bundle, "--images", str(tmp_path), "--lambda", "0.7", "--method",
            "onepass", "--device", "cpu"]
    assert dyce_main(args) == 2
    assert "give --dataset" in capsys.readouterr().err
    assert dyce_main([*args, "--dataset", "digits", "--out", str(tmp_path / "p.parquet")]) == 0
    printed = capsys.readouterr().out
    assert "samples: 5 " in printed and "\naccuracy:" not in printed
    table = pl.read_parquet(tmp_path / "p.parquet")
    assert [Path(p).name for p in table["path"]] == [f"digit{i}.png" for i in range(5)]
    assert table["prediction"].is_between(0, 9).all()


def test_cli_predict_errors_are_one_line_with_status_2(setup, capsys):
    folder = setup["folder"]
    base = ["predict", str(folder / "bundle.pt"), "--data", str(folder / "splits.json")]
    assert dyce_main([*base, "--risk", "0.05", "0.1"]) == 2
    assert "holds no calibration records" in capsys.readouterr().err
    assert dyce_main([*base, "--budget", "0.0"]) == 2
    assert "below the cheapest configuration" in capsys.readouterr().err
    assert dyce_main([*base, "--lambda", "nan", "--method", "onepass"]) == 2
    assert "field 'lambda'" in capsys.readouterr().err


def test_lambda_runs_the_searched_row_not_a_candidate_neighbour(setup, tmp_path):
    from dyce.search.candidates import search_candidates

    folder, records = setup["folder"], setup["records"]
    results = search_candidates(records["search"], setup["macs"], "onepass", [0.8, 0.95],
                                candidates="dense")
    table = evaluate_table(search_table(results, method="onepass"), records["val"],
                           setup["macs"])
    assert table.filter(pl.col("candidate") != "searched").height > 0
    write_table(table, tmp_path / "dense.parquet")
    build_bundle(folder / "exits.pt", setup["fronts"], folder / "macs.json", tmp_path / "b.pt",
                 searched_tables=[tmp_path / "dense.parquet"])
    runtime = EarlyExitRuntime.load(tmp_path / "b.pt", device="cpu")
    assert len(runtime.searched) == 2
    for row in table.filter(pl.col("candidate") == "searched").iter_rows(named=True):
        chosen = runtime.set_lambda(row["lambda"], method="onepass")
        assert chosen.as_config() == json.loads(row["config"])
