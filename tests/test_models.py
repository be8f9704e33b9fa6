"""Backbones, taps and the multi-exit network on random-weight torchvision models."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

from dyce.errors import DyceError
from dyce.network.models import (
    MultiExitNetwork,
    build_backbone,
    build_multi_exit_network,
    default_taps,
    load_exits_checkpoint,
    read_exits_checkpoint,
    save_exits_checkpoint,
    validate_taps,
)

TWO_TYPES = ["mlp1x16", "mlp2x8"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _network(name, size, num_classes=5, in_channels=3, exit_types=TWO_TYPES, taps="auto"):
    torch.manual_seed(0)
    backbone = build_backbone(
        name, num_classes=num_classes, in_channels=in_channels, input_size=size
    )
    return MultiExitNetwork(
        backbone,
        taps,
        exit_types,
        num_classes,
        input_size=size,
        in_channels=in_channels,
        model_name=name,
        device="cpu",
    )


# ----------------------------------------------------------------------------- backbones


@pytest.mark.parametrize(("in_channels", "size"), [(1, 8), (3, 32)])
def test_small_resnet_runs_on_digits_and_cifar_sizes(in_channels, size):
    model = build_backbone("small_resnet8", num_classes=10, in_channels=in_channels)
    logits = model.eval()(torch.randn(3, in_channels, size, size))
    assert logits.shape == (3, 10)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_small_resnet_depths():
    from torchvision.models.resnet import BasicBlock

    for name, blocks in [("small_resnet8", 3), ("small_resnet14", 6), ("small_resnet20", 9)]:
        model = build_backbone(name, num_classes=10)
        assert sum(isinstance(m, BasicBlock) for m in model.modules()) == blocks


def test_unknown_model_lists_close_matches():
    with pytest.raises(DyceError, match="resnet50") as info:
        build_backbone("resnet5O", num_classes=10)
    assert info.value.field == "model"


def test_unknown_weights_name_lists_the_published_ones():
    with pytest.raises(DyceError, match="IMAGENET1K_V1"):
        build_backbone("resnet18", num_classes=10, weights="IMAGENET9K")


def test_torchvision_model_with_one_input_channel():
    model = build_backbone("resnet18", num_classes=4, in_channels=1).eval()
    assert model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_local_state_dict_is_loaded(tmp_path):
    source = build_backbone("small_resnet8", num_classes=10)
    path = tmp_path / "backbone.pt"
    torch.save({"model": source.state_dict(), "epoch": 3}, path)
    loaded = build_backbone("small_resnet8", num_classes=10, weights=str(path))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_mismatching_state_dict_names_the_keys(tmp_path):
    path = tmp_path / "deeper.pt"
    torch.save(build_backbone("small_resnet14", num_classes=10).state_dict(), path)
    with pytest.raises(DyceError, match=r"unexpected: layer1\.1\.") as info:
        build_backbone("small_resnet8", num_classes=10, weights=path)
    assert info.value.path == str(path)


def test_pickled_object_is_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path.write_bytes(pickle.dumps({"model": Payload()}))
    with pytest.raises(DyceError, match="not a readable"):
        build_backbone("small_resnet8", num_classes=10, weights=path)
    assert not marker.exists()


def test_classifier_replacement_for_published_weights():
    from dyce.network.models import _replace_classifier

    for name, attribute in [("resnet18", "fc"), ("mobilenet_v3_small", "classifier")]:
        model = build_backbone(name, num_classes=1000)
        _replace_classifier(model, 1000, 7)
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7), attribute


# ----------------------------------------------------------------------------- taps

EXPECTED_TAPS = {
    # name: (number of taps, first tap, last tap)
    "resnet18": (7, "layer1.0", "layer4.0"),
    "resnet50": (15, "layer1.0", "layer4.1"),
    "convnext_tiny": (17, "features.1.0", "features.7.1"),
    "mobilenet_v3_small": (11, "features.1", "features.11"),
    "efficientnet_b0": (16, "features.1.0", "features.7.0"),
    "regnet_y_400mf": (15, "trunk_output.block1.block1-0", "trunk_output.block4.block4-4"),
    "swin_t": (12, "features.1.0", "features.7.1"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_TAPS))
def test_default_taps_follow_every_block(name):
    count, first, last = EXPECTED_TAPS[name]
    taps = default_taps(build_backbone(name, num_classes=10))
    assert (len(taps), taps[0], taps[-1]) == (count, first, last)


def test_default_taps_of_vit_keep_the_last_encoder_layer():
    taps = default_taps(build_backbone("vit_b_16", num_classes=10, input_size=32))
    assert taps == [f"encoder.layers.encoder_layer_{i}" for i in range(12)]


def test_resnet152_taps_build():
    taps = default_taps(build_backbone("resnet152", num_classes=10))
    assert len(taps) == 3 + 8 + 36 + 3 - 1
    assert taps[-1] == "layer4.1"


def test_models_without_residual_blocks_tap_their_features():
    taps = default_taps(build_backbone("squeezenet1_0", num_classes=10))
    assert taps[0] == "features.0" and all(t.startswith("features.") for t in taps)


def test_explicit_taps_accept_nodes_and_module_prefixes():
    model = build_backbone("resnet18", num_classes=10)
    assert validate_taps(model, ["layer1.0.relu_1", "layer2"]) == ["layer1.0.relu_1", "layer2"]


@pytest.mark.parametrize(
    ("taps", "message"),
    [
        (["layer1.0", "layer9"], "unknown tap node"),
        (["layer1.0.relu_2"], "close matches: layer1.0.relu"),
        (["layer2", "layer1"], "order"),
        (["layer1", "layer1"], "twice"),
        (["layer3", "fc"], "final head"),
    ],
)
def test_bad_taps_are_rejected(taps, message):
    model = build_backbone("resnet18", num_classes=10)
    with pytest.raises(DyceError, match=message) as info:
        validate_taps(model, taps)
    assert info.value.field == "taps"


# ----------------------------------------------------------------------------- network

FAMILIES = [
    ("resnet18", 32, "channels_first"),
    ("resnet50", 32, "channels_first"),
    ("convnext_tiny", 32, "channels_first"),
    ("mobilenet_v3_small", 32, "channels_first"),
    ("efficientnet_b0", 32, "channels_first"),
    ("regnet_y_400mf", 32, "channels_first"),
    ("vit_b_16", 32, "tokens"),
    ("swin_t", 32, "channels_last"),  # torchvision's Swin features are (B, H, W, C)
]


@pytest.mark.parametrize(("name", "size", "layout"), FAMILIES)
def test_multi_exit_network_on_every_family(name, size, layout):
    net = _network(name, size).eval()
    positions = len(net.tap_nodes)
    assert set(net.tap_layouts) == {layout}
    channel_axis = {"channels_first": 0, "channels_last": -1, "tokens": -1}[layout]
    assert net.exit_heads[0][0].mlp[0].in_features == net.tap_shapes[0][channel_axis]
    x = torch.randn(2, 3, size, size)
    final_logits, exit_logits = net(x)
    assert final_logits.shape == (2, 5)
    assert exit_logits.shape == (2, positions * len(TWO_TYPES), 5)
    torch.testing.assert_close(final_logits, net.backbone(x))
    # position-major order: exit p*T + k is head k at position p
    features, _ = net.tap_features(x)
    last = positions - 1
    torch.testing.assert_close(
        exit_logits[:, last * 2 + 1], net.exit_heads[last][1](features[last])
    )


def test_ambiguous_square_feature_maps_get_the_right_layout():
    # 16 channels at 16x16: the shape alone cannot tell channels-first from channels-last
    net = _network("small_resnet8", 16)
    assert net.tap_shapes[0] == (16, 16, 16)
    assert net.tap_layouts == ["channels_first", "channels_first"]


def test_digits_network_has_one_exit_per_block_but_the_last():
    net = _network("small_resnet8", 8, num_classes=10, in_channels=1)
    assert net.tap_nodes == ["layer1.0", "layer2.0"]
    assert net.num_positions == 3
    final_logits, exit_logits = net(torch.randn(4, 1, 8, 8))
    assert exit_logits.shape == (4, 4, 10)


def test_frozen_backbone_stays_in_eval_and_gets_no_gradient():
    net = _network("small_resnet8", 8, in_channels=1)
    net.train()
    assert net.training and not net.backbone.training
    assert all(head.training for heads in net.exit_heads for head in heads)
    assert not any(p.requires_grad for p in net.backbone.parameters())
    _, exit_logits = net(torch.randn(4, 1, 8, 8))
    exit_logits.sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(p.grad is not None for p in net.exit_heads.parameters())
    running_mean = net.backbone.bn1.running_mean.clone()
    net(torch.randn(4, 1, 8, 8) * 5 + 3)
    torch.testing.assert_close(net.backbone.bn1.running_mean, running_mean)


def test_unfrozen_backbone_trains_with_the_exits():
    net = _network("small_resnet8", 8, in_channels=1)
    net.unfreeze_backbone()
    net.train()
    assert net.backbone.training
    final_logits, exit_logits = net(torch.randn(4, 1, 8, 8))
    (final_logits.sum() + exit_logits.sum()).backward()
    assert net.backbone.conv1.weight.grad is not None


def test_moving_the_network_keeps_the_extractor_in_step():
    net = _network("small_resnet8", 8, in_channels=1).eval()
    net.to(torch.float64)
    final_logits, exit_logits = net(torch.randn(2, 1, 8, 8, dtype=torch.float64))
    assert final_logits.dtype == exit_logits.dtype == torch.float64


def test_too_small_input_names_the_failing_layer():
    backbone = build_backbone("squeezenet1_0", num_classes=10)
    with pytest.raises(DyceError, match=r"too small.*features\.2") as info:
        MultiExitNetwork(backbone, "auto", TWO_TYPES, 10, input_size=8, device="cpu")
    assert info.value.field == "input_size"


def test_spec_is_json_and_rebuilds_the_same_network(tmp_path):
    import json

    net = _network("small_resnet8", 8, num_classes=10, in_channels=1)
    spec = json.loads(json.dumps(net.spec))
    assert spec == {
        "model": "small_resnet8",
        "weights": None,
        "taps": ["layer1.0", "layer2.0"],
        "exit_types": TWO_TYPES,
        "num_classes": 10,
        "input_size": 8,
        "in_channels": 1,
    }
    rebuilt = build_multi_exit_network(
        spec, net.backbone.state_dict(), net.exit_heads.state_dict(), device="cpu"
    ).eval()
    x = torch.randn(3, 1, 8, 8)
    for ours, theirs in zip(net.eval()(x), rebuilt(x), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_exits_checkpoint_round_trip(tmp_path):
    net = _network("small_resnet8", 8, num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        for parameter in net.exit_heads.parameters():
            parameter.add_(0.5)
    path = tmp_path / "run" / "exits.pt"
    save_exits_checkpoint(path, net, extra={"epoch": 4, "history": [0.5, 0.25]})
    assert [p.name for p in path.parent.iterdir()] == ["exits.pt"]  # no temporary left over
    loaded = load_exits_checkpoint(path)
    assert loaded.spec == net.spec
    assert loaded.checkpoint_extra == {"epoch": 4, "history": [0.5, 0.25]}
    x = torch.randn(2, 1, 8, 8)
    for ours, theirs in zip(net(x), loaded.eval()(x), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_bad_checkpoints_are_rejected(tmp_path):
    with pytest.raises(DyceError, match="not found"):
        read_exits_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DyceError, match="not a readable"):
        read_exits_checkpoint(garbage)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(DyceError, match="not a dyce exits checkpoint"):
        read_exits_checkpoint(plain)
    net = _network("small_resnet8", 8, num_classes=10, in_channels=1)
    path = tmp_path / "exits.pt"
    save_exits_checkpoint(path, net)
    data = torch.load(path, weights_only=True)
    data["spec"]["exit_types"] = ["mlp3x16", "mlp2x8"]
    torch.save(data, path)
    with pytest.raises(DyceError, match="exit heads do not match") as info:
        load_exits_checkpoint(path)
    assert info.value.path == str(path)
