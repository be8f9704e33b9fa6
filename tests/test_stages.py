"""Splitting backbones into stages: chaining the stages must reproduce the forward exactly."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

from dyce.errors import DyceError
from dyce.network.stages import run_stages, split_stages

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small_convnext() -> nn.Module:
    settings = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, None, 1)]
    return ConvNeXt(settings, num_classes=10)


def _small_vit() -> nn.Module:
    return VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=10,
    )


def _small_swin() -> nn.Module:
    return SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
        window_size=[2, 2], num_classes=10,
    )


def _small_resnet() -> nn.Module:
    from dyce.network.models import build_backbone

    return build_backbone("small_resnet14", num_classes=10, in_channels=1, input_size=8)


CASES = {
    "small_resnet14": (_small_resnet, ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0"],
                       8),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10),
                 ["layer1", "layer2", "layer3", "layer4"], 32),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=10),
                           [f"features.{i}" for i in range(1, 12)], 32),
    "convnext": (_small_convnext, ["features.1", "features.3", "features.5"], 32),
    "vit": (_small_vit, [f"encoder.layers.encoder_layer_{i}" for i in range(2)], 32),
    "swin": (_small_swin, [f"features.{i}" for i in range(7)], 32),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_chained_stages_equal_the_full_forward(name: str) -> None:
    torch.manual_seed(0)
    build, taps, size = CASES[name]
    backbone = build().eval()
    stages = split_stages(backbone, taps)
    assert len(stages) == len(taps) + 1
    x = torch.randn(3, 1 if name.startswith("small") else 3, size, size)
    with torch.no_grad():
        expected = backbone(x)
        assert torch.equal(run_stages(stages, x), expected)
        # A stage applied to part of a batch gives that part of the full result.
        features = stages[0](x)
        rest = features[1:]
        for stage in stages[1:]:
            rest = stage(rest)
        torch.testing.assert_close(rest, expected[1:])


def test_stage_outputs_are_the_tap_tensors() -> None:
    torch.manual_seed(0)
    backbone = torchvision.models.resnet18(num_classes=10).eval()
    stages = split_stages(backbone, ["layer2", "layer3"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        taps = torchvision.models.feature_extraction.create_feature_extractor(
            backbone, ["layer2", "layer3"]
        )(x)
        after_layer2 = stages[0](x)
        after_layer3 = stages[1](after_layer2)
    assert torch.equal(after_layer2, taps["layer2"])
    assert torch.equal(after_layer3, taps["layer3"])


def test_stages_share_the_backbone_parameters() -> None:
    backbone = torchvision.models.resnet18(num_classes=10).eval()
    stages = split_stages(backbone, ["layer1"])
    stage_params = {p.data_ptr() for stage in stages for p in stage.parameters()}
    assert stage_params == {p.data_ptr() for p in backbone.parameters()}


def test_tap_inside_a_residual_block_is_rejected_with_its_name() -> None:
    backbone = torchvision.models.resnet18()
    with pytest.raises(DyceError, match=r"tap 'layer1\.0\.conv1' does not separate"):
        split_stages(backbone, ["layer1.0.conv1"])


class _UsesInputLate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc((h + x).flatten(1))


def test_input_used_after_the_tap_is_rejected() -> None:
    with pytest.raises(DyceError, match=r"tap 'conv' does not separate.*'x'"):
        split_stages(_UsesInputLate(), ["conv"])


@pytest.mark.parametrize(
    ("taps", "message"),
    [
        (["nope"], r"tap 'nope' is not a node"),
        (["layer2", "layer1"], r"tap 'layer1' comes at or before tap 'layer2'"),
        (["fc"], r"tap 'fc' is at or after the backbone's output"),
        ([], r"at least one tap"),
    ],
)
def test_bad_taps_raise_a_clear_error(taps: list[str], message: str) -> None:
    with pytest.raises(DyceError, match=message):
        split_stages(torchvision.models.resnet18(), taps)


def test_default_taps_of_every_tested_family_separate_the_graph() -> None:
    from dyce.network.models import default_taps

    for name, (build, _taps, _size) in CASES.items():
        backbone = build()
        stages = split_stages(backbone, default_taps(backbone))
        assert len(stages) >= 2, name
