"""Feature cache: one backbone pass per split, exit training and recording on the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dyce.cli import main
from dyce.errors import DyceError
from dyce.network.features import open_feature_cache
from dyce.records.format import read_records

EXIT_TYPES = "mlp1x1000,mlp2x32"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Digits splits, a trained small_resnet8 backbone and float32/float16 caches of train."""
    folder = tmp_path_factory.mktemp("features")
    data, backbone = folder / "splits.json", folder / "backbone.pt"
    steps = [
        ["prepare-data", "--dataset", "digits", "--seed", "1", "--out", str(data)],
        ["train-backbone", "--data", str(data), "--model", "small_resnet8", "--epochs", "2",
         "--batch-size", "128", "--device", "cpu", "--out", str(backbone)],
    ]
    for dtype in ("float32", "float16"):
        steps.append(["cache-features", "--data", str(data), "--model", "small_resnet8",
                      "--backbone", str(backbone), "--split", "train", "--dtype", dtype,
                      "--batch-size", "100", "--device", "cpu", "--out",
                      str(folder / f"train_{dtype}")])
    for argv in steps:
        assert main(argv) == 0, argv
    return folder


def train_exits(folder, out, *extra):
    argv = ["train-exits", "--data", str(folder / "splits.json"), "--model", "small_resnet8",
            "--backbone", str(folder / "backbone.pt"), "--exit-types", EXIT_TYPES, "--epochs",
            "2", "--batch-size", "64", "--device", "cpu", "--out", str(out), *extra]
    assert main(argv) == 0
    return torch.load(out, weights_only=True)


def record(folder, exits, out, split="train", *extra):
    argv = ["record", "--exits", str(exits), "--data", str(folder / "splits.json"), "--split",
            split, "--topk", "2", "--batch-size", "100", "--device", "cpu", "--out", str(out),
            *extra]
    assert main(argv) == 0
    return read_records(out)


@pytest.mark.slow
def test_cache_holds_each_taps_pooled_features_and_the_final_logits(digits):
    from dyce.data.splits import load_split
    from dyce.network.models import load_exits_checkpoint

    cache = open_feature_cache(digits / "train_float32")
    splits = json.loads((digits / "splits.json").read_text())
    np.testing.assert_array_equal(cache.sample_ids, splits["splits"]["train"])
    train_exits(digits, digits / "probe.pt")
    net = load_exits_checkpoint(digits / "probe.pt")
    dataset = load_split(digits / "splits.json", "train")
    images = torch.stack([dataset[i][0] for i in range(5)])
    with torch.no_grad():
        features, final = net.tap_features(images)
    assert len(cache.taps) == len(features) == len(net.tap_nodes)
    for cached, feature in zip(cache.taps, features, strict=True):
        np.testing.assert_allclose(cached[:5], feature.mean(dim=(2, 3)).numpy(), rtol=1e-5,
                                   atol=1e-6)
    np.testing.assert_allclose(cache.final[:5], final.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cache.labels[:5], [dataset[i][1] for i in range(5)])
    assert cache.meta["model"] == "small_resnet8" and cache.meta["split"] == "train"


@pytest.mark.slow
def test_training_from_a_float32_cache_equals_training_through_the_backbone(digits):
    # Digits have no augmentation, so both paths see the same samples in the same batches.
    through_network = train_exits(digits, digits / "network.pt")
    from_cache = train_exits(digits, digits / "cache.pt", "--features",
                             str(digits / "train_float32"))
    for name, weight in through_network["exits"].items():
        torch.testing.assert_close(from_cache["exits"][name], weight, rtol=1e-5, atol=1e-6)
    history = from_cache["extra"]["training"]
    assert history["feature_cache"] is True
    assert through_network["extra"]["training"]["feature_cache"] is False


@pytest.mark.slow
def test_records_from_the_cache_equal_records_through_the_network(digits):
    exits = digits / "exits.pt"
    train_exits(digits, exits)
    network = record(digits, exits, digits / "net.parquet")
    exact = record(digits, exits, digits / "c32.parquet", "train", "--features",
                   str(digits / "train_float32"))
    half = record(digits, exits, digits / "c16.parquet", "train", "--features",
                  str(digits / "train_float16"))
    for cached in (exact, half):
        np.testing.assert_array_equal(cached.sample_ids, network.sample_ids)
        np.testing.assert_array_equal(cached.labels, network.labels)
        assert cached.exit_types == network.exit_types
        assert cached.position_names == network.position_names
        assert cached.split == "train" and cached.dataset == "digits"
    np.testing.assert_allclose(exact.confs, network.confs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(exact.preds, network.preds)
    # float16 features: the final head is exact (float32 logits), the exits within rounding.
    np.testing.assert_array_equal(half.confs[-1], network.confs[-1])
    np.testing.assert_allclose(half.confs, network.confs, atol=5e-3)
    assert (half.top1_preds == network.top1_preds).mean() > 0.99


@pytest.mark.slow
def test_a_cache_of_another_backbone_or_split_is_refused(digits, tmp_path):
    exits = digits / "exits_refuse.pt"
    train_exits(digits, exits)
    other = tmp_path / "other_backbone.pt"
    assert main(["train-backbone", "--data", str(digits / "splits.json"), "--model",
                 "small_resnet8", "--epochs", "1", "--seed", "5", "--batch-size", "256",
                 "--device", "cpu", "--out", str(other)]) == 0
    argv = ["train-exits", "--data", str(digits / "splits.json"), "--model", "small_resnet8",
            "--backbone", str(other), "--exit-types", EXIT_TYPES, "--epochs", "1", "--device",
            "cpu", "--features", str(digits / "train_float32"), "--out", str(tmp_path / "e.pt")]
    assert main(argv) == 2
    assert not (tmp_path / "e.pt").exists()
    with pytest.raises(DyceError, match="backbone_digest"):
        from dyce.cli import build_parser

        args = build_parser().parse_args(argv)
        args.func(args)
    # the train cache is not the val split
    assert main(["record", "--exits", str(exits), "--data", str(digits / "splits.json"),
                 "--split", "val", "--device", "cpu", "--features",
                 str(digits / "train_float32"), "--out", str(tmp_path / "r.parquet")]) == 2
    assert not (tmp_path / "r.parquet").exists()


@pytest.mark.slow
def test_a_damaged_cache_names_the_file_and_field(digits, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(digits / "train_float32", broken)
    np.save(broken / "tap1.npy", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(DyceError, match=r"tap1\.npy.*field 'tap1'"):
        open_feature_cache(broken)
    (broken / "meta.json").write_text("{}")
    with pytest.raises(DyceError, match="field 'format'"):
        open_feature_cache(broken)
    with pytest.raises(DyceError, match="not found"):
        open_feature_cache(tmp_path / "missing")


def test_float16_overflow_is_refused_not_stored_as_infinity(tmp_path):
    from torch import nn

    from dyce.network.features import cache_features
    from dyce.network.models import MultiExitNetwork

    class Loud(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc((self.conv(x) * 1e6).mean(dim=(2, 3)))

    net = MultiExitNetwork(Loud(), ["mul"], ["mlp1x1"], 3, input_size=8, in_channels=1,
                           device="cpu")
    dataset = [(torch.ones(1, 8, 8), 0, i) for i in range(4)]
    with pytest.raises(DyceError, match="float16"):
        cache_features(net, dataset, out_dir=tmp_path / "c", batch_size=2, model="loud",
                       dataset_name="x", split="train", device="cpu", dtype="float16")
    assert not (tmp_path / "c").exists() and not list(tmp_path.iterdir())
    cache_features(net, dataset, out_dir=tmp_path / "c", batch_size=2, model="loud",
                   dataset_name="x", split="train", device="cpu", dtype="float32")
    assert np.isfinite(open_feature_cache(tmp_path / "c").taps[0]).all()
