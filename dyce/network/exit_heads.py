"""Exit heads ``mlp{L}x{W}``: global average pooling followed by an MLP.

An exit type name ``mlp{L}x{W}`` means L linear layers with hidden width W and a ReLU between
consecutive layers; ``mlp1x1000`` is therefore one Linear layer from the feature channels to the
classes (its width is not used). Every head first turns a tap's feature map into a ``(B, C)``
vector by averaging over every non-channel axis:

- ``channels_first`` ``(B, C, H, W)`` (convolutional networks): mean over H and W;
- ``channels_last`` ``(B, H, W, C)`` (torchvision's Swin): mean over H and W;
- ``tokens`` ``(B, T, D)`` (vision transformers): mean over all T tokens, class token included.
  The mean rather than the class token alone because at early layers the class token has not yet
  gathered much from the patches, and the mean works for models without a class token;
- ``vector`` ``(B, C)``: used as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from dyce.errors import DyceError

DEFAULT_EXIT_TYPES: tuple[str, ...] = (
    "mlp1x1000",
    "mlp3x500",
    "mlp3x1000",
    "mlp5x500",
    "mlp5x1000",
)
LAYOUTS: tuple[str, ...] = ("channels_first", "channels_last", "tokens", "vector")

_EXIT_TYPE_PATTERN = re.compile(r"mlp([1-9][0-9]*)x([1-9][0-9]*)")


@dataclass(frozen=True)
class ExitType:
    """A parsed exit type: ``num_layers`` Linear layers, ``hidden_width`` units between them."""

    name: str
    num_layers: int
    hidden_width: int


def parse_exit_type(name: str) -> ExitType:
    """Parse ``mlp{L}x{W}`` (L, W positive integers) into an :class:`ExitType`."""
    match = _EXIT_TYPE_PATTERN.fullmatch(name.strip()) if isinstance(name, str) else None
    if match is None:
        raise DyceError(
            f"unknown exit type {name!r}; expected 'mlp{{L}}x{{W}}' such as 'mlp1x1000' or 'mlp3x500'",
            field="exit_types",
        )
    return ExitType(
        name=match.group(0), num_layers=int(match.group(1)), hidden_width=int(match.group(2))
    )


def parse_exit_types(names: str | Iterable[str] | None) -> list[str]:
    """Exit type names from a comma-separated string or a list; None gives the defaults.

    Names are validated and must be unique; the order is kept (it is the exit type index k).
    """
    if names is None:
        return list(DEFAULT_EXIT_TYPES)
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    items = [n for n in items if n]
    if not items:
        raise DyceError("no exit type given", field="exit_types")
    parsed = [parse_exit_type(n).name for n in items]
    duplicates = sorted({n for n in parsed if parsed.count(n) > 1})
    if duplicates:
        raise DyceError(f"exit types repeated: {', '.join(duplicates)}", field="exit_types")
    return parsed


def infer_layout(feature_shape: Sequence[int]) -> str:
    """Default layout for a per-sample feature shape: 1-d vector, 2-d tokens, 3-d channels first."""
    return {1: "vector", 2: "tokens", 3: "channels_first"}.get(len(feature_shape), "channels_first")


class GlobalPool(nn.Module):
    """Average a feature map to ``(B, C)`` according to its layout (see the module docstring)."""

    def __init__(self, layout: str):
        super().__init__()
        if layout not in LAYOUTS:
            raise DyceError(f"unknown feature layout {layout!r}; one of {', '.join(LAYOUTS)}")
        self.layout = layout

    def forward(self, features: Tensor) -> Tensor:
        if self.layout == "vector":
            return features.flatten(1)
        if self.layout == "channels_first":
            return features.flatten(2).mean(dim=2)
        return features.flatten(1, -2).mean(dim=1)  # channels_last and tokens

    def extra_repr(self) -> str:
        return f"layout={self.layout!r}"


class ExitHead(nn.Module):
    """Global average pooling then an MLP: features of one tap -> logits ``(B, num_classes)``."""

    def __init__(self, exit_type: ExitType, in_channels: int, num_classes: int, layout: str):
        super().__init__()
        self.exit_type = exit_type
        self.pool = GlobalPool(layout)
        widths = (
            [in_channels] + [exit_type.hidden_width] * (exit_type.num_layers - 1) + [num_classes]
        )
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if index > 0:
                layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Linear(width_in, width_out))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(self.pool(features))


def feature_channels(feature_shape: Sequence[int], layout: str) -> int:
    """Channels C of a per-sample feature shape in the given layout."""
    if layout == "channels_first":
        return int(feature_shape[0])
    if layout == "vector":
        channels = 1
        for size in feature_shape:
            channels *= int(size)
        return channels
    return int(feature_shape[-1])


def build_exit_head(
    name: str, feature_shape: Sequence[int], num_classes: int, layout: str | None = None
) -> ExitHead:
    """Build the exit head ``name`` for features of per-sample shape ``feature_shape``.

    ``feature_shape`` excludes the batch axis: ``(C, H, W)``, ``(H, W, C)``, ``(T, D)`` or ``(C,)``.
    ``layout`` defaults to :func:`infer_layout` (3-d shapes are taken as channels first; pass
    ``"channels_last"`` for Swin-style features).
    """
    exit_type = parse_exit_type(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise DyceError(f"must be a positive integer, got {num_classes!r}", field="num_classes")
    shape = tuple(int(s) for s in feature_shape)
    if not shape or any(s < 1 for s in shape):
        raise DyceError(
            f"feature shape {shape} is empty or has a zero-size axis", field="feature_shape"
        )
    layout = infer_layout(shape) if layout is None else layout
    return ExitHead(exit_type, feature_channels(shape, layout), num_classes, layout)
