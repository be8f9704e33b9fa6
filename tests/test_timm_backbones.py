"""timm backbones (``timm:NAME``): building, taps per family, tracing, MACs, preprocessing.

Every model is built with random weights (nothing can be downloaded here); sizes are small
except where MACs are compared with timm's published 224-pixel figures.
"""

from __future__ import annotations

import json
from functools import cache

import pytest
import torch
from PIL import Image
from torch import nn

from dyce.cli import main
from dyce.errors import DyceError
from dyce.macs.counting import count_macs
from dyce.network.models import (
    MultiExitNetwork,
    build_backbone,
    default_taps,
    is_known_model,
    load_exits_checkpoint,
    save_exits_checkpoint,
)
from dyce.network.stages import run_stages, split_stages
from dyce.network.timm_backbones import model_transform, pretrained_tag

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def _backbone(name: str, size: int | None = None, num_classes: int = 1000) -> nn.Module:
    torch.manual_seed(0)
    return build_backbone(f"timm:{name}", num_classes=num_classes, input_size=size).eval()


def _network(name: str, size: int, num_classes: int = 5) -> MultiExitNetwork:
    return MultiExitNetwork(
        _backbone(name, size, num_classes), "auto", ["mlp1x16", "mlp2x8"], num_classes,
        input_size=size, model_name=f"timm:{name}", device="cpu",
    )


# ----------------------------------------------------------------------------- names


def test_timm_model_takes_classes_and_channels():
    model = build_backbone("timm:resnet18", num_classes=7, in_channels=1)
    assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_unknown_timm_name_suggests_close_ones():
    with pytest.raises(DyceError, match="timm:convnextv2_atto") as error:
        build_backbone("timm:convnextv2_attto", num_classes=10)
    assert error.value.field == "model"


def test_known_model_names_include_timm_ones():
    assert is_known_model("timm:convnextv2_tiny")
    assert is_known_model("resnet18")
    assert not is_known_model("timm:resnet_9000")
    assert not is_known_model("resnet_9000")


# ----------------------------------------------------------------------------- taps


@pytest.mark.parametrize(
    ("name", "count", "first", "last"),
    [
        ("resnet18", 7, "layer1.0", "layer4.0"),  # layer4.1 feeds the global pooling
        ("convnextv2_atto", 11, "stages.0.blocks.0", "stages.3.blocks.0"),
        ("davit_tiny", 5, "stages.0.blocks.0", "stages.2.blocks.2"),
        ("deit_tiny_patch16_224", 12, "blocks.0", "blocks.11"),  # then the final norm
        ("swin_tiny_patch4_window7_224", 12, "layers.0.blocks.0", "layers.3.blocks.1"),
        ("efficientnet_b0", 16, "blocks.0.0", "blocks.6.0"),  # then the 1x1 head conv
    ],
)
def test_one_tap_after_every_block_of_each_paper_family(name, count, first, last):
    taps = default_taps(_backbone(name))
    assert (len(taps), taps[0], taps[-1]) == (count, first, last)


@pytest.mark.parametrize(
    ("name", "size", "layout"),
    [
        ("convnextv2_atto", 32, "channels_first"),
        ("deit_tiny_patch16_224", 32, "tokens"),
        ("swin_tiny_patch4_window7_224", 64, "channels_last"),
    ],
)
def test_exit_heads_pool_each_layout_and_the_final_head_is_the_backbone(name, size, layout):
    net = _network(name, size)
    assert set(net.tap_layouts) == {layout}
    images = torch.randn(3, 3, size, size)
    final, exits = net(images)
    with torch.no_grad():
        expected = net.backbone(images)
    assert exits.shape == (3, 2 * len(net.tap_nodes), 5)
    torch.testing.assert_close(final, expected)


@pytest.mark.parametrize(
    ("name", "size"), [("resnet18", 32), ("convnextv2_atto", 32), ("deit_tiny_patch16_224", 32)]
)
def test_stages_split_at_the_taps_chain_to_the_backbone(name, size):
    backbone = _backbone(name, size, 5)
    stages = split_stages(backbone, default_taps(backbone))
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = backbone(images)
    torch.testing.assert_close(run_stages(stages, images), expected)


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.mean() > 0:  # Python control flow on a tensor value: fx cannot trace this
            x = x.relu()
        return self.fc(x.mean((2, 3)))


def test_untraceable_backbone_is_a_clear_error():
    with pytest.raises(DyceError, match="torch.fx cannot trace _DataDependent"):
        split_stages(_DataDependent(), ["conv"])
    with pytest.raises(DyceError, match="torch.fx cannot trace _DataDependent"):
        MultiExitNetwork(_DataDependent(), ["conv"], ["mlp1x4"], 2, input_size=8, device="cpu")


def test_exits_checkpoint_of_a_timm_model_round_trips(tmp_path):
    net = _network("convnextv2_atto", 32)
    path = tmp_path / "exits.pt"
    save_exits_checkpoint(path, net)
    loaded = load_exits_checkpoint(path)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for got, want in zip(loaded(images), net(images), strict=True):
            torch.testing.assert_close(got, want)
    assert loaded.spec["model"] == "timm:convnextv2_atto"


# ----------------------------------------------------------------------------- weights


def test_pretrained_weights_take_timms_download_path(monkeypatch):
    import huggingface_hub.constants

    assert pretrained_tag("timm:convnextv2_atto", "DEFAULT") == "fcmae_ft_in1k"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DyceError, match="could not fetch timm weights resnet18.a1_in1k"):
        build_backbone("timm:resnet18", num_classes=10, weights="DEFAULT")


def test_unknown_pretrained_tag_lists_the_published_ones():
    with pytest.raises(DyceError, match="a1_in1k") as error:
        build_backbone("timm:resnet18", num_classes=10, weights="imagenet_v9")
    assert error.value.field == "weights"


def test_local_state_dict_loads_into_a_timm_model(tmp_path):
    source = build_backbone("timm:resnet18", num_classes=5)
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    loaded = build_backbone("timm:resnet18", num_classes=5, weights=str(path))
    for name, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)


# ----------------------------------------------------------------------------- MACs


# timm's published GMACs at 224 px (results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv of
# huggingface/pytorch-image-models) and the DyCE original's convnextv2_atto ori_macs.
@pytest.mark.parametrize(
    ("name", "published"),
    [("resnet18", 1.82e9), ("deit_tiny_patch16_224", 1.26e9), ("convnextv2_atto", 0.55e9)],
)
def test_macs_agree_with_published_figures(name, published):
    macs, _ = count_macs(_backbone(name), (torch.zeros(1, 3, 224, 224),))
    assert macs == pytest.approx(published, rel=0.02)


def test_macs_cli_on_a_timm_model(tmp_path):
    out = tmp_path / "macs.json"
    argv = ["macs", "--model", "timm:convnextv2_atto", "--input-size", "224"]
    assert main([*argv, "--exit-types", "mlp1x1000", "--out", str(out)]) == 0
    info = json.loads(out.read_text())
    backbone = info["backbone"]
    assert backbone["name"] == "timm:convnextv2_atto"
    assert backbone["ori_macs"] == pytest.approx(547_332_480, rel=0.02)  # the original's figure
    assert backbone["macs"] == sorted(backbone["macs"])
    assert len(backbone["positions"]) == 12


# ----------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize(
    ("name", "mean", "std"),
    [("deit_tiny_patch16_224", 0.485, 0.229), ("vit_tiny_patch16_224", 0.5, 0.5)],
)
def test_image_folders_use_the_pretrained_configs_preprocessing(name, mean, std):
    splits = {"dataset": "imagefolder", "image_size": 48}
    transform = model_transform(_backbone(name), splits)
    tensor = transform(Image.new("RGB", (80, 60), (128, 128, 128)))
    assert tensor.shape == (3, 48, 48)
    torch.testing.assert_close(tensor[0], torch.full((48, 48), (128 / 255 - mean) / std))
    assert "bicubic" in repr(transform).lower()


def test_other_datasets_and_torchvision_models_keep_the_datasets_preprocessing():
    assert model_transform(_backbone("resnet18"), {"dataset": "cifar10", "image_size": 32}) is None
    torchvision_model = build_backbone("resnet18", num_classes=10)
    assert model_transform(torchvision_model, {"dataset": "imagefolder", "image_size": 64}) is None
