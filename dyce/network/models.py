"""Backbones by name, exit taps via ``torchvision.models.feature_extraction``, multi-exit networks.

- :func:`build_backbone` builds any torchvision classification model (random, published or local
  weights), any timm model named ``timm:NAME`` (see :mod:`dyce.network.timm_backbones`) or one of the
  small CIFAR-style ResNets ``small_resnet8/14/20`` for small inputs.
- :func:`default_taps` picks one tap after every residual block; taps are torch.fx node names as
  :func:`torchvision.models.feature_extraction.get_graph_node_names` lists them (a module name
  such as ``layer1.0`` means the last node inside that module).
- :class:`MultiExitNetwork` runs the backbone once per batch through a feature extractor and
  applies every exit head at every tap; :func:`save_exits_checkpoint` /
  :func:`load_exits_checkpoint` store it in a self-describing file loaded with
  ``weights_only=True``.
"""

from __future__ import annotations

import difflib
import os
import pickle
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dyce.errors import DyceError
from dyce.io import atomic_path
from dyce.network.architectures import SMALL_RESNET_BLOCKS
from dyce.network.exit_heads import DEFAULT_EXIT_TYPES, build_exit_head, parse_exit_types
from dyce.network.timm_backbones import (
    build_timm_backbone,
    check_timm_name,
    fx_options,
    is_timm_module,
    is_timm_name,
    timm_block_names,
)

# Stored in every exits checkpoint file: a format name, not a module path.
CHECKPOINT_FORMAT = "dyce.exits"
CHECKPOINT_VERSION = 1
SPEC_KEYS = ("model", "weights", "taps", "exit_types", "num_classes", "input_size", "in_channels")


# --------------------------------------------------------------------------- small ResNets


class SmallResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem (no max-pool), three stages of ``BasicBlock``, pooling, fc.

    Input ``(B, in_channels, H, W)`` with H, W >= 4 (8x8 digits, 32x32 CIFAR); the stages
    downsample by 1, 2 and 2. Output logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
    ):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages = []
        channels = widths[0]
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            blocks = []
            for block_index in range(blocks_per_stage):
                downsample = None
                if block_index == 0 and (stride != 1 or channels != width):
                    downsample = nn.Sequential(
                        nn.Conv2d(channels, width, kernel_size=1, stride=stride, bias=False),
                        nn.BatchNorm2d(width),
                    )
                blocks.append(
                    BasicBlock(
                        channels,
                        width,
                        stride=stride if block_index == 0 else 1,
                        downsample=downsample,
                    )
                )
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------- backbones


def available_models() -> list[str]:
    """Names accepted by :func:`build_backbone`: the small ResNets and torchvision classifiers.

    timm models (``timm:NAME``, NAME from ``timm.list_models()``, over a thousand) are accepted
    too but not listed; :func:`is_known_model` checks any name.
    """
    import torchvision.models

    return sorted(SMALL_RESNET_BLOCKS) + sorted(
        torchvision.models.list_models(module=torchvision.models)
    )


def is_known_model(name: str) -> bool:
    """Whether :func:`build_backbone` can build ``name`` (timm is imported for ``timm:`` names)."""
    if is_timm_name(name):
        try:
            check_timm_name(name)
        except DyceError:
            return False
        return True
    return name in available_models()


def _check_model_name(name: str) -> None:
    if is_timm_name(name):
        check_timm_name(name)
        return
    names = available_models()
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.5)
        hint = (
            f"; close matches: {', '.join(close)}"
            if close
            else f"; known models include {', '.join(names[:8])}, …"
        )
        raise DyceError(f"unknown model {name!r}{hint}", field="model")


def size_pair(input_size: int | Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` in pixels from an int or a pair; DyceError unless both are positive."""
    if isinstance(input_size, bool):
        raise DyceError(
            f"must be a positive integer or a pair, got {input_size!r}", field="input_size"
        )
    if isinstance(input_size, int):
        pair = (input_size, input_size)
    elif isinstance(input_size, Sequence) and len(input_size) == 2:
        pair = tuple(input_size)
    else:
        raise DyceError(
            f"must be a positive integer or a pair, got {input_size!r}", field="input_size"
        )
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in pair):
        raise DyceError(f"must be positive integers, got {input_size!r}", field="input_size")
    return int(pair[0]), int(pair[1])


def _is_weights_path(weights: str | os.PathLike) -> bool:
    text = os.fspath(weights)
    suffixes = {".pt", ".pth", ".bin", ".ckpt", ".tar"}
    return (
        isinstance(weights, os.PathLike)
        or "/" in text
        or os.sep in text
        or Path(text).suffix in suffixes
        or Path(text).exists()
    )


def _weights_enum(name: str, weights: str):
    """The torchvision weights enum member ``weights`` (e.g. "DEFAULT", "IMAGENET1K_V2") of ``name``."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    member = weights.rsplit(".", 1)[-1]
    try:
        return enum[member] if member != "DEFAULT" else enum.DEFAULT
    except (KeyError, AttributeError):
        valid = ["DEFAULT"] + [w.name for w in enum]
        raise DyceError(
            f"unknown weights {weights!r} for {name}; one of {', '.join(valid)} or a state-dict path",
            field="weights",
        ) from None


def _load_weights_only(path: Path, what: str) -> Any:
    """``torch.load(path)`` onto the CPU with ``weights_only=True`` (no code is run); a file it
    cannot read raises :class:`DyceError` "not a readable ``what``" with the first error line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise DyceError(f"not a readable {what} ({first_line})", path=path) from None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict saved with ``torch.save`` (``weights_only=True``: no code is run).

    Accepts a plain state dict or a dictionary holding one under ``model``, ``state_dict`` or
    ``backbone``; a ``module.`` prefix (DataParallel) is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise DyceError("weights file not found", path=path, field="weights")
    data = _load_weights_only(path, "torch state dict")
    if isinstance(data, dict):
        for key in ("model", "state_dict", "backbone"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise DyceError("does not hold a state dict (a mapping of names to tensors)", path=path)
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_backbone_state(
    model: nn.Module, state: dict[str, Tensor], source: str | os.PathLike | None = None
) -> None:
    """Load ``state`` into ``model`` strictly; DyceError listing missing/unexpected/mismatched keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if keys:
                more = f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""
                parts.append(f"{label}: {', '.join(keys[:4])}{more}")
        raise DyceError(
            "state dict does not match the architecture; " + "; ".join(parts),
            path=source,
            field="weights",
        )
    model.load_state_dict(state, strict=True)


def _replace_module(model: nn.Module, qualified_name: str, new: nn.Module) -> None:
    parent_name, _, child = qualified_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _replace_classifier(model: nn.Module, old_classes: int, num_classes: int) -> None:
    """Swap the last Linear (or 1x1 Conv2d) producing ``old_classes`` outputs for a fresh one."""
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if (isinstance(module, nn.Linear) and module.out_features == old_classes)
        or (
            isinstance(module, nn.Conv2d)
            and module.out_channels == old_classes
            and module.kernel_size == (1, 1)
        )
    ]
    if not candidates:
        raise DyceError(
            f"cannot find the classifier layer with {old_classes} outputs to replace",
            field="num_classes",
        )
    name, old = candidates[-1]
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=1, bias=old.bias is not None)
    _replace_module(model, name, new)


def _replace_stem(model: nn.Module, in_channels: int) -> None:
    """Swap the first 3-channel Conv2d for one taking ``in_channels`` (pretrained weights averaged)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            new = nn.Conv2d(
                in_channels,
                module.out_channels,
                kernel_size=module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                groups=1,
                bias=module.bias is not None,
                padding_mode=module.padding_mode,
            )
            with torch.no_grad():
                mean = module.weight.mean(dim=1, keepdim=True) * (3.0 / in_channels)
                new.weight.copy_(mean.expand_as(new.weight))
                if module.bias is not None:
                    new.bias.copy_(module.bias)
            _replace_module(model, name, new)
            return
    raise DyceError("cannot find a 3-channel input convolution to adapt", field="in_channels")


def build_backbone(
    name: str,
    *,
    num_classes: int,
    weights: str | os.PathLike | None = None,
    in_channels: int = 3,
    input_size: int | Sequence[int] | None = None,
) -> nn.Module:
    """Build a classification backbone by name; output logits ``(B, num_classes)``.

    Args:
        name: a torchvision classification model (``torchvision.models.list_models``), a timm
            model ``timm:NAME`` (``timm.list_models()``) or
            ``small_resnet8``/``small_resnet14``/``small_resnet20``.
        num_classes: classes of the output; a published classifier of another size is replaced.
        weights: None (random), a torchvision weights name of the model ("DEFAULT",
            "IMAGENET1K_V2"; downloaded by torchvision), for timm models "DEFAULT" or a
            pretrained tag ("fcmae_ft_in22k_in1k"; downloaded by timm), or a path to a local
            state dict.
        in_channels: input channels; torchvision models get their stem convolution adapted.
        input_size: pixels (int or (H, W)); passed as ``image_size`` to builders that take it
            (vision transformers) when no published weights are used.
    """
    import torchvision.models

    _check_model_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise DyceError(f"must be a positive integer, got {num_classes!r}", field="num_classes")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise DyceError(f"must be a positive integer, got {in_channels!r}", field="in_channels")
    weights_path = weights if weights is not None and _is_weights_path(weights) else None
    if is_timm_name(name):
        model: nn.Module = build_timm_backbone(
            name,
            num_classes=num_classes,
            pretrained=None if weights is None or weights_path is not None else str(weights),
            in_channels=in_channels,
            input_size=None if input_size is None else size_pair(input_size),
        )
    elif name in SMALL_RESNET_BLOCKS:
        if weights is not None and weights_path is None:
            raise DyceError(
                f"{name} has no published weights; give a state-dict path", field="weights"
            )
        model = SmallResNet(SMALL_RESNET_BLOCKS[name], num_classes, in_channels)
    elif weights is not None and weights_path is None:
        member = _weights_enum(name, str(weights))
        try:
            model = torchvision.models.get_model(name, weights=member)
        except OSError as error:  # urllib errors derive from OSError
            raise DyceError(
                f"could not fetch weights {member} ({error})", field="weights"
            ) from None
        published_classes = len(member.meta.get("categories") or []) or num_classes
        if published_classes != num_classes:
            _replace_classifier(model, published_classes, num_classes)
        if in_channels != 3:
            _replace_stem(model, in_channels)
    else:
        model = None
        if input_size is not None:
            height, width = size_pair(input_size)
            if height == width:
                try:
                    model = torchvision.models.get_model(
                        name, num_classes=num_classes, image_size=height
                    )
                except TypeError:  # the builder takes no image_size: a fully convolutional model
                    model = None
        if model is None:
            model = torchvision.models.get_model(name, num_classes=num_classes)
        if in_channels != 3:
            _replace_stem(model, in_channels)
    if weights_path is not None:
        load_backbone_state(model, load_state_dict_file(weights_path), source=weights_path)
    return model


# --------------------------------------------------------------------------- taps


def _block_types() -> tuple[type, ...]:
    """Residual-block classes of torchvision's classification families (one tap after each)."""
    from torchvision.models import (
        convnext,
        efficientnet,
        mobilenetv2,
        mobilenetv3,
        regnet,
        resnet,
        shufflenetv2,
        swin_transformer,
        vision_transformer,
    )

    return (
        resnet.BasicBlock,
        resnet.Bottleneck,
        convnext.CNBlock,
        mobilenetv2.InvertedResidual,
        mobilenetv3.InvertedResidual,
        efficientnet.MBConv,
        efficientnet.FusedMBConv,
        regnet.ResBottleneckBlock,
        vision_transformer.EncoderBlock,
        swin_transformer.SwinTransformerBlock,  # SwinTransformerBlockV2 derives from it
        shufflenetv2.InvertedResidual,
    )


def graph_node_names(model: nn.Module) -> list[str]:
    """Eval-mode torch.fx node names of ``model`` in execution order (keeps the model's mode)."""
    from torchvision.models.feature_extraction import get_graph_node_names

    modes = {m: m.training for m in model.modules()}
    try:
        return list(get_graph_node_names(model, **fx_options(model))[1])
    except Exception as error:  # fx raises many types (TraceError, TypeError, …) for control flow
        raise untraceable_error(model, error) from error
    finally:
        for module, mode in modes.items():
            module.training = mode


def untraceable_error(model: nn.Module, error: Exception) -> DyceError:
    """The DyceError for a backbone that torch.fx cannot trace (taps, MACs and the early-exit
    runtime all work on its traced graph)."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return DyceError(
        f"torch.fx cannot trace {type(model).__name__} ({type(error).__name__}: {first_line}); "
        "dyce needs a traceable backbone (no Python control flow on tensor values in forward)",
        field="model",
    )


def _matching_nodes(query: str, nodes: Sequence[str]) -> list[int]:
    pattern = re.compile(rf"^{re.escape(query)}(\.|$)")
    return [i for i, n in enumerate(nodes) if pattern.match(n)]


def _is_identity(model: nn.Module, node: str) -> bool:
    try:
        return isinstance(model.get_submodule(node), nn.Identity)
    except AttributeError:
        return False


def _is_global_pool(model: nn.Module, node: str) -> bool:
    try:
        module = model.get_submodule(node)
    except AttributeError:
        function = re.sub(r"_\d+$", "", node.rsplit(".", 1)[-1])
        return function in {"mean", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "avg_pool2d"}
    pools = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AvgPool2d)
    return isinstance(module, pools)


def default_taps(model: nn.Module, nodes: Sequence[str] | None = None) -> list[str]:
    """One tap after every residual block of ``model``, in execution order.

    A block is a module of one of torchvision's residual-block classes (BasicBlock, Bottleneck,
    CNBlock, InvertedResidual, MBConv, ResBottleneckBlock, EncoderBlock, SwinTransformerBlock, …)
    not nested in another. Models without such blocks (VGG, AlexNet, SqueezeNet, …) get one tap
    after every parameterised child of their largest top-level ``nn.Sequential`` (``features``).
    timm models get one tap after every block of their stages as ``feature_info`` describes
    them (:func:`dyce.network.timm_backbones.timm_block_names`). The last block is dropped when its
    output goes straight (through identity layers only) into the global pooling of the
    classifier (it is the final feature then).
    """
    nodes = graph_node_names(model) if nodes is None else list(nodes)
    block_types = _block_types()
    blocks: list[str] = timm_block_names(model) if is_timm_module(model) else []
    for name, module in [] if blocks else model.named_modules():
        if (
            name
            and isinstance(module, block_types)
            and not any(name.startswith(b + ".") for b in blocks)
        ):
            blocks.append(name)
    if not blocks:  # the top-level Sequential with the most parameterised children ("features")
        stages = [
            [
                f"{parent_name}.{child_name}"
                for child_name, child in parent.named_children()
                if any(True for _ in child.parameters())
            ]
            for parent_name, parent in model.named_children()
            if isinstance(parent, nn.Sequential)
        ]
        blocks = max(stages, key=len, default=[])
    last_node = {b: _matching_nodes(b, nodes)[-1] for b in blocks if _matching_nodes(b, nodes)}
    taps = sorted(last_node, key=last_node.__getitem__)
    if taps:
        following = last_node[taps[-1]] + 1
        while following < len(nodes) and _is_identity(model, nodes[following]):
            following += 1
        if following < len(nodes) and _is_global_pool(model, nodes[following]):
            taps = taps[:-1]
    if not taps:
        raise DyceError(
            f"found no block to tap in {type(model).__name__}; pass tap node names", field="taps"
        )
    return taps


def validate_taps(
    model: nn.Module, taps: Iterable[str], nodes: Sequence[str] | None = None
) -> list[str]:
    """Check that every tap names a graph node (or a module prefix) and that they run in order."""
    nodes = graph_node_names(model) if nodes is None else list(nodes)
    taps = [str(t).strip() for t in taps]
    if not taps or any(not t for t in taps):
        raise DyceError("empty tap name in the list", field="taps")
    unknown = [t for t in taps if not _matching_nodes(t, nodes)]
    if unknown:
        close = sorted(
            {c for t in unknown for c in difflib.get_close_matches(t, nodes, n=4, cutoff=0.6)}
        )
        hint = (
            f"close matches: {', '.join(close)}"
            if close
            else f"valid names include {', '.join(nodes[1:7])}, …"
        )
        raise DyceError(f"unknown tap node(s) {', '.join(unknown)}; {hint}", field="taps")
    if len(set(taps)) != len(taps):
        raise DyceError("a tap is listed twice", field="taps")
    order = [_matching_nodes(t, nodes)[-1] for t in taps]
    if order != sorted(order):
        raise DyceError("taps must be listed in the order the network computes them", field="taps")
    if order[-1] == len(nodes) - 1:
        raise DyceError(
            f"{taps[-1]} is the network output, which is the final head already", field="taps"
        )
    return taps


def resolve_taps(
    model: nn.Module, taps: str | Iterable[str] | None, nodes: Sequence[str] | None = None
) -> list[str]:
    """``"auto"``/None -> :func:`default_taps`; a comma-separated string or list -> validated names."""
    nodes = graph_node_names(model) if nodes is None else list(nodes)
    if taps is None or taps == "auto":
        return default_taps(model, nodes)
    if isinstance(taps, str):
        taps = taps.split(",")
    return validate_taps(model, taps, nodes)


# --------------------------------------------------------------------------- multi-exit network


def default_device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _create_extractor(backbone: nn.Module, return_nodes: dict[str, str]) -> nn.Module:
    """``create_feature_extractor`` that leaves the modes of the backbone's modules unchanged."""
    from torchvision.models.feature_extraction import create_feature_extractor

    modes = {m: m.training for m in backbone.modules()}
    try:
        return create_feature_extractor(
            backbone, return_nodes=return_nodes, suppress_diff_warning=True, **fx_options(backbone)
        )
    except DyceError:
        raise
    except Exception as error:
        raise untraceable_error(backbone, error) from error
    finally:
        for module, mode in modes.items():
            module.training = mode


def _run_probe(
    backbone: nn.Module, extractor: nn.Module, dummy: Tensor, input_size: Any
) -> dict[str, Tensor]:
    """One eval-mode forward of ``extractor``; a failure names the last layer entered."""
    entered: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda _m, _x, name=name: entered.append(name))
        for name, module in backbone.named_modules()
        if name and not list(module.children())
    ]
    try:
        with torch.no_grad():
            return extractor(dummy)
    except (RuntimeError, ValueError, AssertionError, IndexError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        where = f" at layer {entered[-1]}" if entered else ""
        raise DyceError(
            f"input size {input_size} is too small or invalid for this network{where}: {message}",
            field="input_size",
        ) from None
    finally:
        for handle in handles:
            handle.remove()


def _feature_layouts(shapes: list[tuple[int, ...]], probe_other_size) -> list[str]:
    """Layout of each per-sample feature shape; 3-d maps decided from how they scale with input."""
    layouts: list[str | None] = []
    for shape in shapes:
        if len(shape) == 1:
            layouts.append("vector")
        elif len(shape) == 2:
            layouts.append("tokens")
        elif len(shape) == 3 and shape[1] == shape[2] != shape[0]:
            layouts.append("channels_first")
        elif len(shape) == 3 and shape[0] == shape[1] != shape[2]:
            layouts.append("channels_last")
        else:
            layouts.append(None)
    if None in layouts:
        other = probe_other_size()
        for i, layout in enumerate(layouts):
            if layout is None:
                if (
                    other is not None
                    and other[i][-1] == shapes[i][-1]
                    and other[i][0] != shapes[i][0]
                ):
                    layouts[i] = "channels_last"
                else:
                    layouts[i] = "channels_first"
    return [str(layout) for layout in layouts]


def tap_extractor(backbone: nn.Module, taps: Sequence[str], final_node: str) -> nn.Module:
    """Feature extractor returning ``{"tap0": …, "tap{P-2}": …, "final": logits}`` for ``taps``.

    Built with ``create_feature_extractor``; it shares the backbone's modules (not a copy).
    """
    return_nodes = {tap: f"tap{i}" for i, tap in enumerate(taps)}
    return_nodes[final_node] = "final"
    return _create_extractor(backbone, return_nodes)


def probe_tap_features(
    backbone: nn.Module,
    extractor: nn.Module,
    num_taps: int,
    input_size: int | Sequence[int],
    in_channels: int = 3,
    device: str | torch.device = "cpu",
) -> tuple[list[tuple[int, ...]], list[str], tuple[int, ...]]:
    """Per-sample tap shapes, their layouts and the final output shape, from one dummy forward.

    Shapes exclude the batch axis, e.g. ``(C, H, W)``; layouts as in :mod:`dyce.network.exit_heads`. A 3-d
    shape that does not tell channels-first from channels-last is settled by a second forward
    32 pixels larger (channels do not grow with the input). An input too small for the network
    raises DyceError naming the last layer entered.
    """
    height, width = size_pair(input_size)

    def shapes_at(size: tuple[int, int]):
        dummy = torch.zeros(1, in_channels, *size, device=device)
        was_training = extractor.training
        extractor.eval()
        try:
            shown = size[0] if size[0] == size[1] else list(size)
            out = _run_probe(backbone, extractor, dummy, shown)
        finally:
            extractor.train(was_training)
        taps = [tuple(out[f"tap{i}"].shape[1:]) for i in range(num_taps)]
        return taps, tuple(out["final"].shape[1:])

    def shapes_at_other_size():
        try:
            return shapes_at((height + 32, width + 32))[0]
        except DyceError:
            return None

    shapes, final_shape = shapes_at((height, width))
    return shapes, _feature_layouts(shapes, shapes_at_other_size), final_shape


class MultiExitNetwork(nn.Module):
    """A backbone with exit heads of every type at every tap.

    ``forward(x)`` with ``x`` ``(B, in_channels, H, W)`` returns ``(final_logits (B, C),
    exit_logits (B, N, C))`` with ``N = (P-1)*T`` in position-major order (exit ``p*T + k`` is
    type k at position p). ``exit_heads[p][k]`` is that head. The backbone is frozen by default
    (eval mode, no gradients); ``net.backbone`` is the original module.
    """

    def __init__(
        self,
        backbone: nn.Module,
        tap_nodes: str | Sequence[str] | None,
        exit_types: str | Sequence[str] | None,
        num_classes: int,
        *,
        input_size: int | Sequence[int],
        in_channels: int = 3,
        model_name: str | None = None,
        weights: str | os.PathLike | None = None,
        freeze: bool = True,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        device = default_device() if device is None else torch.device(device)
        height, width = size_pair(input_size)
        nodes = graph_node_names(backbone)
        self.backbone = backbone.to(device)
        self.tap_nodes: list[str] = resolve_taps(backbone, tap_nodes, nodes)
        self.exit_types: list[str] = parse_exit_types(exit_types)
        self.final_node: str = nodes[-1]
        self.num_classes = int(num_classes)
        self.input_size = (height, width)
        self.in_channels = int(in_channels)
        self.backbone_frozen = False
        self._rebuild_extractor()
        shapes, layouts, final_shape = probe_tap_features(
            self.backbone, self._extractor, len(self.tap_nodes), input_size, in_channels, device
        )
        if final_shape != (self.num_classes,):
            raise DyceError(
                f"backbone output has shape {final_shape}, expected ({self.num_classes},)",
                field="num_classes",
            )
        self.tap_shapes: list[tuple[int, ...]] = shapes
        self.tap_layouts: list[str] = layouts
        self.exit_heads = nn.ModuleList(
            nn.ModuleList(
                build_exit_head(t, shape, self.num_classes, layout) for t in self.exit_types
            )
            for shape, layout in zip(self.tap_shapes, self.tap_layouts, strict=True)
        ).to(device)
        self.spec: dict[str, Any] = {
            "model": model_name if model_name is not None else type(backbone).__name__,
            "weights": None if weights is None else os.fspath(weights),
            "taps": list(self.tap_nodes),
            "exit_types": list(self.exit_types),
            "num_classes": self.num_classes,
            "input_size": height if height == width else [height, width],
            "in_channels": self.in_channels,
        }
        if freeze:
            self.freeze_backbone()

    # -- shapes

    @property
    def num_positions(self) -> int:
        """P: candidate exit positions plus the final head."""
        return len(self.tap_nodes) + 1

    # -- feature extractor (kept out of the module tree: it shares the backbone's modules)

    def _rebuild_extractor(self) -> None:
        extractor = tap_extractor(self.backbone, self.tap_nodes, self.final_node)
        extractor.train(self.backbone.training)
        self.__dict__["_extractor"] = extractor

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if "_extractor" in self.__dict__:
            self._rebuild_extractor()  # buffers read through get_attr were replaced, not moved
        return self

    def train(self, mode: bool = True) -> MultiExitNetwork:
        super().train(mode)
        backbone_mode = mode and not self.backbone_frozen
        self.backbone.train(backbone_mode)
        self._extractor.train(backbone_mode)
        return self

    def freeze_backbone(self) -> None:
        """Eval mode and ``requires_grad=False`` for the backbone; ``train()`` keeps it so."""
        self.backbone_frozen = True
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)
        self.backbone.eval()
        self._extractor.eval()

    def unfreeze_backbone(self) -> None:
        """Undo :meth:`freeze_backbone` (the backbone follows ``train()``/``eval()`` again)."""
        self.backbone_frozen = False
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(True)
        self.train(self.training)

    # -- forward

    def tap_features(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """One backbone pass: the P-1 tap features (per-tap shapes ``(B, *tap_shapes[p])``) and
        the final logits ``(B, C)``. Without gradients while the backbone is frozen."""
        if self.backbone_frozen:
            with torch.no_grad():
                out = self._extractor(x)
        else:
            out = self._extractor(x)
        return [out[f"tap{i}"] for i in range(len(self.tap_nodes))], out["final"]

    def exit_logits_from_features(self, features: Sequence[Tensor]) -> Tensor:
        """Exit logits ``(B, N, C)``, ``N = (P-1)*T`` position-major, from :meth:`tap_features`."""
        if len(features) != len(self.exit_heads):
            raise DyceError(
                f"got {len(features)} tap features, the network has {len(self.exit_heads)} taps"
            )
        logits = [
            head(feature)
            for feature, heads in zip(features, self.exit_heads, strict=True)
            for head in heads
        ]
        return torch.stack(logits, dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features, final_logits = self.tap_features(x)
        return final_logits, self.exit_logits_from_features(features)


def _check_spec(spec: Any, source: str | os.PathLike | None = None) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise DyceError("model spec must be a dictionary", path=source, field="spec")
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:
        raise DyceError(f"missing {', '.join(missing)}", path=source, field="spec")
    if not isinstance(spec["taps"], list) or not all(isinstance(t, str) for t in spec["taps"]):
        raise DyceError("must be a list of node names", path=source, field="spec.taps")
    return spec


def build_multi_exit_network(
    spec: dict[str, Any],
    backbone_state: dict[str, Tensor] | None = None,
    exit_state: dict[str, Tensor] | None = None,
    *,
    device: str | torch.device | None = None,
    source: str | os.PathLike | None = None,
) -> MultiExitNetwork:
    """Rebuild a :class:`MultiExitNetwork` from its ``spec``.

    With ``backbone_state`` the backbone is built without weights and loaded from it (nothing is
    downloaded); otherwise ``spec["weights"]`` is used. ``exit_state`` is the state dict of
    ``net.exit_heads``. ``source`` names the file in error messages.
    """
    spec = _check_spec(spec, source)
    backbone = build_backbone(
        spec["model"],
        num_classes=spec["num_classes"],
        weights=None if backbone_state is not None else spec["weights"],
        in_channels=spec["in_channels"],
        input_size=spec["input_size"],
    )
    if backbone_state is not None:
        load_backbone_state(backbone, backbone_state, source=source)
    net = MultiExitNetwork(
        backbone,
        spec["taps"],
        spec["exit_types"],
        spec["num_classes"],
        input_size=spec["input_size"],
        in_channels=spec["in_channels"],
        model_name=spec["model"],
        weights=spec["weights"],
        device=device,
    )
    if exit_state is not None:
        try:
            net.exit_heads.load_state_dict(exit_state, strict=True)
        except RuntimeError as error:
            raise DyceError(
                f"exit heads do not match the spec ({str(error).splitlines()[0]})",
                path=source,
                field="exits",
            ) from None
    return net


def save_exits_checkpoint(
    path: str | os.PathLike, net: MultiExitNetwork, extra: dict | None = None
) -> None:
    """Write ``{"format", "format_version", "spec", "backbone", "exits", "extra"}`` atomically.

    ``extra`` must hold only tensors, numbers, strings, lists and dicts (it is read back with
    ``weights_only=True``).
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "spec": dict(net.spec),
        "backbone": {k: v.detach().cpu() for k, v in net.backbone.state_dict().items()},
        "exits": {k: v.detach().cpu() for k, v in net.exit_heads.state_dict().items()},
        "extra": extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_exits_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dictionary (tensors on CPU), validated; loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise DyceError("exits checkpoint not found", path=path)
    data = _load_weights_only(path, "exits checkpoint")
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise DyceError(
            f"not a dyce exits checkpoint (no format '{CHECKPOINT_FORMAT}')",
            path=path,
            field="format",
        )
    for key in ("backbone", "exits"):
        if not isinstance(data.get(key), dict):
            raise DyceError("missing or not a state dict", path=path, field=key)
    _check_spec(data.get("spec"), path)
    return data


def load_exits_checkpoint(
    path: str | os.PathLike, device: str | torch.device | None = "cpu"
) -> MultiExitNetwork:
    """Rebuild the network saved by :func:`save_exits_checkpoint`; ``net.checkpoint_extra`` holds
    its ``extra``. ``device=None`` picks CUDA when present."""
    data = read_exits_checkpoint(path)
    net = build_multi_exit_network(
        data["spec"], data["backbone"], data["exits"], device=device, source=path
    )
    net.checkpoint_extra = data.get("extra")
    return net


__all__ = [
    "DEFAULT_EXIT_TYPES",
    "MultiExitNetwork",
    "SmallResNet",
    "available_models",
    "build_backbone",
    "build_multi_exit_network",
    "default_taps",
    "graph_node_names",
    "probe_tap_features",
    "tap_extractor",
    "load_exits_checkpoint",
    "read_exits_checkpoint",
    "resolve_taps",
    "save_exits_checkpoint",
    "validate_taps",
]
