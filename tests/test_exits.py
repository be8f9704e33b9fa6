"""Exit heads: names, MLP structure, pooling of every feature layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dyce.errors import DyceError
from dyce.network.exit_heads import (
    DEFAULT_EXIT_TYPES,
    build_exit_head,
    parse_exit_type,
    parse_exit_types,
)


def test_parse_exit_type_reads_layers_and_width():
    exit_type = parse_exit_type("mlp3x500")
    assert (exit_type.num_layers, exit_type.hidden_width) == (3, 500)


@pytest.mark.parametrize(
    "bad", ["mlp", "mlp0x100", "mlp3x", "cnn1x100", "mlp3x500x2", "", "mlp-1x5"]
)
def test_bad_exit_type_names_are_rejected(bad):
    with pytest.raises(DyceError, match="exit type"):
        parse_exit_type(bad)


def test_parse_exit_types_defaults_and_comma_lists():
    assert parse_exit_types(None) == list(DEFAULT_EXIT_TYPES)
    assert DEFAULT_EXIT_TYPES == ("mlp1x1000", "mlp3x500", "mlp3x1000", "mlp5x500", "mlp5x1000")
    assert parse_exit_types("mlp1x10, mlp2x8") == ["mlp1x10", "mlp2x8"]
    with pytest.raises(DyceError, match="repeated"):
        parse_exit_types("mlp1x10,mlp1x10")
    with pytest.raises(DyceError, match="no exit type"):
        parse_exit_types(" , ")


def _linears(head) -> list[nn.Linear]:
    return [m for m in head.mlp if isinstance(m, nn.Linear)]


def test_mlp1_is_a_single_linear_from_channels_to_classes():
    head = build_exit_head("mlp1x1000", (64, 7, 7), num_classes=10)
    linears = _linears(head)
    assert len(linears) == 1
    assert (linears[0].in_features, linears[0].out_features) == (64, 10)


def test_mlp_layers_widths_and_relus():
    head = build_exit_head("mlp3x500", (32, 4, 4), num_classes=7)
    shapes = [(m.in_features, m.out_features) for m in _linears(head)]
    assert shapes == [(32, 500), (500, 500), (500, 7)]
    assert sum(isinstance(m, nn.ReLU) for m in head.mlp) == 2
    assert not isinstance(head.mlp[-1], nn.ReLU)  # logits are not rectified


def test_channels_first_head_pools_over_space():
    torch.manual_seed(0)
    head = build_exit_head("mlp1x8", (6, 5, 3), num_classes=4)
    features = torch.randn(2, 6, 5, 3)
    expected = head.mlp(features.mean(dim=(2, 3)))
    torch.testing.assert_close(head(features), expected)


def test_channels_last_head_pools_over_space():
    torch.manual_seed(0)
    head = build_exit_head("mlp2x8", (5, 3, 6), num_classes=4, layout="channels_last")
    assert _linears(head)[0].in_features == 6
    features = torch.randn(2, 5, 3, 6)
    torch.testing.assert_close(head(features), head.mlp(features.mean(dim=(1, 2))))


def test_token_head_averages_all_tokens_including_class_token():
    torch.manual_seed(0)
    head = build_exit_head("mlp1x8", (5, 12), num_classes=3)
    assert head.pool.layout == "tokens"
    tokens = torch.randn(2, 5, 12)
    torch.testing.assert_close(head(tokens), head.mlp(tokens.mean(dim=1)))


def test_bad_head_arguments_are_rejected():
    with pytest.raises(DyceError, match="num_classes"):
        build_exit_head("mlp1x8", (4, 2, 2), num_classes=0)
    with pytest.raises(DyceError, match="feature_shape"):
        build_exit_head("mlp1x8", (4, 0, 2), num_classes=3)
    with pytest.raises(DyceError, match="layout"):
        build_exit_head("mlp1x8", (4, 2, 2), num_classes=3, layout="nchw")
