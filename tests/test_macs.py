"""MACs with thop: seed macs_info format, cumulative backbone MACs, published totals, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dyce.cli import main
from dyce.macs.counting import count_macs, macs_info_for
from dyce.macs.info import load_macs_info
from dyce.network.models import MultiExitNetwork, build_backbone, save_exits_checkpoint

TYPES = "mlp1x1000,mlp3x500"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _digits_info() -> dict:
    return macs_info_for(
        "small_resnet8", input_size=8, in_channels=1, num_classes=10, exit_types=TYPES
    )


def test_macs_info_has_the_seed_format():
    info = _digits_info()
    parsed = load_macs_info(info)  # the seed loader accepts it unchanged
    assert parsed.head_names == ("mlp1x1000", "mlp3x500")
    assert parsed.num_positions == 3
    assert info["backbone"]["positions"] == ["layer1.0", "layer2.0", "final"]
    assert set(info) == {"head", "backbone"}
    for head in info["head"]:
        assert set(head) == {"name", "macs", "params"}
        assert head["macs"][-1] == 0 and head["params"][-1] == 0
        assert all(isinstance(v, int) for v in head["macs"] + head["params"])
    json.dumps(info)


def test_head_macs_are_pooling_plus_linear_layers():
    info = _digits_info()
    mlp1, mlp3 = info["head"]
    # position 0: 16 channels at 8x8; position 1: 32 channels at 4x4; 10 classes
    pool0, pool1 = 16 * 64 + 16, 32 * 16 + 32
    assert mlp1["macs"] == [pool0 + 16 * 10, pool1 + 32 * 10, 0]
    assert mlp3["macs"] == [
        pool0 + 16 * 500 + 500 * 500 + 500 * 10,
        pool1 + 32 * 500 + 500 * 500 + 500 * 10,
        0,
    ]
    assert mlp1["params"] == [16 * 10 + 10, 32 * 10 + 10, 0]


def test_backbone_macs_are_cumulative_up_to_each_tap():
    info = _digits_info()
    torch.manual_seed(0)
    model = build_backbone("small_resnet8", num_classes=10, in_channels=1)
    x = torch.zeros(1, 1, 8, 8)
    stem_and_layer1 = nn.Sequential(model.conv1, model.bn1, model.relu, model.layer1)
    up_to_layer2 = nn.Sequential(*stem_and_layer1, model.layer2)
    whole, params = count_macs(model, (x,))
    backbone = info["backbone"]
    assert backbone["macs"] == [
        count_macs(stem_and_layer1, (x,))[0],
        count_macs(up_to_layer2, (x,))[0],
        whole,
    ]
    assert backbone["ori_macs"] == whole
    assert backbone["ori_params"] == params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "size"),
    [("resnet18", 64), ("mobilenet_v3_small", 64), ("swin_t", 32)],
)
def test_cumulative_macs_never_decrease(name, size):
    info = macs_info_for(name, input_size=size, num_classes=10, exit_types="mlp1x1000")
    macs = info["backbone"]["macs"]
    assert all(a <= b for a, b in zip(macs, macs[1:], strict=False))
    assert macs[0] > 0 and macs[-1] == info["backbone"]["ori_macs"]
    assert len(info["head"][0]["macs"]) == len(macs)


def test_vit_layers_each_add_the_same_macs():
    # identical encoder layers: the count up to layer i grows by one layer's MACs per tap
    info = macs_info_for("vit_b_16", input_size=32, num_classes=10, exit_types="mlp1x1000")
    macs = info["backbone"]["macs"][:-1]
    steps = {b - a for a, b in zip(macs, macs[1:], strict=False)}
    assert len(steps) == 1
    assert macs[0] < steps.pop() * 2  # the first tap is the patch embedding plus one layer


def test_network_spec_and_name_give_the_same_macs():
    net = MultiExitNetwork(
        build_backbone("small_resnet8", num_classes=10, in_channels=1),
        "auto",
        TYPES,
        10,
        input_size=8,
        in_channels=1,
        model_name="small_resnet8",
        device="cpu",
    )
    expected = _digits_info()
    assert macs_info_for(net) == expected
    assert macs_info_for(net.spec) == expected


def _published_check(name: str) -> None:
    from torchvision.models import get_model_weights

    published_gmacs = get_model_weights(name).DEFAULT.meta["_ops"]  # torchvision's "GFLOPS" = GMACs
    macs, _ = count_macs(build_backbone(name, num_classes=1000), (torch.zeros(1, 3, 224, 224),))
    assert abs(macs / 1e9 - published_gmacs) / published_gmacs < 0.015


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_small_model_totals_match_torchvision(name):
    _published_check(name)


def test_batchnorm_is_folded_unless_asked_to_count_it():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
    x = torch.zeros(1, 3, 5, 5)
    conv = 4 * 25 * 3 * 9
    assert count_macs(model, (x,))[0] == conv
    assert count_macs(model, (x,), fold_batchnorm=False)[0] == conv + 2 * 2 * 4 * 25


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "resnet50",
        "resnet152",
        "convnext_tiny",
        "vit_b_16",
        "swin_t",
        "efficientnet_b0",
        "regnet_y_400mf",
    ],
)
def test_totals_match_torchvision(name):
    _published_check(name)


# ----------------------------------------------------------------------------- CLI


def test_cli_writes_macs_info(tmp_path):
    out = tmp_path / "macs.json"
    argv = ["macs", "--model", "small_resnet8", "--input-size", "8", "--in-channels", "1"]
    assert main([*argv, "--num-classes", "10", "--exit-types", TYPES, "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == _digits_info()


def test_cli_takes_the_spec_from_an_exits_checkpoint(tmp_path):
    net = MultiExitNetwork(
        build_backbone("small_resnet8", num_classes=10, in_channels=1),
        ["layer1.0"],
        "mlp1x1000",
        10,
        input_size=8,
        in_channels=1,
        model_name="small_resnet8",
        device="cpu",
    )
    checkpoint = tmp_path / "exits.pt"
    save_exits_checkpoint(checkpoint, net)
    out = tmp_path / "macs.json"
    assert main(["macs", "--exits", str(checkpoint), "--out", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["backbone"]["positions"] == ["layer1.0", "final"]
    assert [h["name"] for h in info["head"]] == ["mlp1x1000"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "resnet5O", "--input-size", "32"], "close matches: resnet50"),
        (["--model", "resnet18", "--input-size", "32", "--taps", "layer1.0,layer7"], "layer7"),
        (["--model", "squeezenet1_0", "--input-size", "8"], "too small"),
        (["--model", "resnet18", "--input-size", "32", "--exit-types", "mlp0x3"], "exit type"),
        (["--input-size", "32"], "--model"),
    ],
)
def test_cli_bad_input_is_one_line_and_no_file(tmp_path, capsys, arguments, message):
    out = tmp_path / "macs.json"
    assert main(["macs", *arguments, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_resnet50_with_defaults(tmp_path):
    out = tmp_path / "macs.json"
    assert main(["macs", "--model", "resnet50", "--input-size", "224", "--out", str(out)]) == 0
    info = load_macs_info(out)
    assert info.num_positions == 16 and info.num_exit_types == 5
    assert info.raw["head"][0]["macs"][0] == 256 * 56 * 56 + 256 + 256 * 1000
