"""timm backbones, named ``timm:NAME`` (e.g. ``timm:convnextv2_tiny``), beside torchvision's.

- :func:`build_timm_backbone` builds one with ``timm.create_model``: random weights, timm's
  published weights by pretrained tag (``"DEFAULT"`` is the model's default tag; timm downloads
  them from the Hugging Face Hub), with its own classifier and stem adaptation for other class
  counts and channel counts.
- :func:`timm_block_names` finds one tap per block from timm's own feature description
  (``model.feature_info``: the module after which each stage's features are taken) — the blocks
  are the children of each stage's block sequence — so no per-family code is needed.
- :func:`fx_options` gives the torch.fx tracer settings timm registers for its models (modules
  and functions that must not be traced into) and fixes optional forward arguments (ViT's
  ``attn_mask``) to their defaults; :mod:`dyce.models` and :mod:`dyce.stages` trace with them.
- :func:`timm_transform` is the preprocessing of the model's pretrained config
  (``timm.data.resolve_data_config`` / ``create_transform``) at a given image size.

timm (and torch) are imported only when a ``timm:`` model is used.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dyce.errors import DyceError

if TYPE_CHECKING:  # importing this module stays torch-free
    from torch import nn

PREFIX = "timm:"
DEFAULT_WEIGHTS = "DEFAULT"


def is_timm_name(name: object) -> bool:
    """Whether ``name`` names a timm backbone (``timm:NAME``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def timm_architecture(name: str) -> str:
    """The timm model name of ``timm:NAME`` (``NAME``)."""
    return name[len(PREFIX) :]


def is_timm_module(module: nn.Module) -> bool:
    """Whether ``module`` is a model class defined by timm."""
    return type(module).__module__.split(".", 1)[0] == "timm"


def check_timm_name(name: str) -> None:
    """Raise :class:`DyceError` (with close matches) unless ``timm:NAME`` is a timm model."""
    import timm

    architecture = timm_architecture(name)
    if architecture and timm.is_model(architecture):
        return
    names = timm.list_models()
    close = difflib.get_close_matches(architecture, names, n=5, cutoff=0.6)
    hint = (
        f"; close matches: {', '.join(PREFIX + c for c in close)}"
        if close
        else "; timm.list_models() lists the known names"
    )
    raise DyceError(f"unknown timm model {architecture!r}{hint}", field="model")


def available_timm_models() -> list[str]:
    """Every ``timm:NAME`` timm can build (``timm.list_models()``)."""
    import timm

    return [PREFIX + name for name in timm.list_models()]


def pretrained_tag(name: str, weights: str) -> str:
    """The pretrained tag that ``weights`` ("DEFAULT" or a tag) means for ``timm:NAME``.

    DyceError naming the available tags when the model has none or not that one.
    """
    import timm

    architecture = timm_architecture(name)
    tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{architecture}.*") if "." in n]
    if not tags:
        raise DyceError(f"timm publishes no weights for {architecture}", field="weights")
    tag = weights.split(".", 1)[1] if weights.startswith(f"{architecture}.") else weights
    if tag == DEFAULT_WEIGHTS:
        return timm.models.get_pretrained_cfg(architecture).tag
    if tag not in tags:
        raise DyceError(
            f"unknown weights {weights!r} for {name}; one of {DEFAULT_WEIGHTS}, "
            f"{', '.join(tags)} or a state-dict path",
            field="weights",
        )
    return tag


def build_timm_backbone(
    name: str,
    *,
    num_classes: int,
    pretrained: str | None = None,
    in_channels: int = 3,
    input_size: tuple[int, int] | None = None,
) -> nn.Module:
    """``timm.create_model`` for ``timm:NAME``; output logits ``(B, num_classes)``.

    Args:
        name: ``timm:NAME`` with NAME one of ``timm.list_models()``.
        num_classes: classes of the output; with published weights of another class count
            timm replaces the classifier by a fresh one.
        pretrained: None (random weights) or a pretrained tag / "DEFAULT" (downloaded by timm
            from the Hugging Face Hub, cached under ``$HF_HOME``).
        in_channels: input channels (timm adapts the stem; published stem weights are summed
            or repeated over channels).
        input_size: ``(H, W)`` pixels, passed as ``img_size`` to models that take it (vision
            transformers, Swin) when it differs from the model's default.
    """
    import timm

    check_timm_name(name)
    architecture = timm_architecture(name)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_channels}
    if pretrained is not None:
        architecture = f"{architecture}.{pretrained_tag(name, pretrained)}"
    default_size = tuple(timm.get_pretrained_cfg(architecture).input_size[1:])
    if input_size is not None and tuple(input_size) != default_size:
        try:  # models with a fixed token grid (ViT, Swin) take the image size
            return _create(architecture, pretrained is not None, img_size=tuple(input_size), **kwargs)
        except TypeError:  # a convolutional network: any size runs
            pass
    return _create(architecture, pretrained is not None, **kwargs)


def _create(architecture: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    import timm

    try:
        return timm.create_model(architecture, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as error:  # no network, hub errors (OSError subclasses)
        if not pretrained:
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DyceError(
            f"could not fetch timm weights {architecture} ({first_line})", field="weights"
        ) from None


# --------------------------------------------------------------------------- tracing


def fx_options(module: nn.Module) -> dict[str, Any]:
    """Keyword arguments for torchvision's fx feature extraction of ``module``.

    For a timm model: ``tracer_kwargs`` with the modules and functions timm registers as not
    traceable (kept as single calls) and ``concrete_args`` fixing every optional argument of its
    ``forward`` after the image to its default (e.g. ViT's ``attn_mask=None``). Empty for
    other models.
    """
    if not is_timm_module(module):
        return {}
    from timm.models import get_notrace_functions, get_notrace_modules

    parameters = list(inspect.signature(module.forward).parameters.values())[1:]
    concrete = {
        p.name: p.default
        for p in parameters
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return {
        "tracer_kwargs": {
            "leaf_modules": list(get_notrace_modules()),
            "autowrap_functions": list(get_notrace_functions()),
        },
        "concrete_args": concrete or None,
    }


# --------------------------------------------------------------------------- taps


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _stage_blocks(model: nn.Module, stage: str) -> list[str]:
    """Blocks of a stage: the children of the stage (a Sequential) or of its ``blocks``
    sequence; a stage that is neither is one block itself (a ViT block)."""
    from torch import nn

    module = model.get_submodule(stage)
    if isinstance(module, (nn.Sequential, nn.ModuleList)):
        return [f"{stage}.{n}" for n, c in module.named_children() if _has_parameters(c)]
    blocks = getattr(module, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)):
        return [f"{stage}.blocks.{n}" for n, c in blocks.named_children() if _has_parameters(c)]
    return [stage]


def timm_block_names(model: nn.Module) -> list[str]:
    """Module names of every block of a timm model, in execution order.

    The stages are the modules of ``model.feature_info`` that hold parameters (ResNet's
    stem activation ``act1`` does not); when they are children of one container (e.g.
    EfficientNet's ``blocks``, ViT's ``blocks``), every child of that container from the first
    to the last stage counts, since feature_info lists only the stages where the resolution
    changes. Each stage contributes its blocks (:func:`_stage_blocks`):
    ``layer1.0`` (ResNet), ``stages.0.blocks.0`` (ConvNeXt, DaViT), ``layers.0.blocks.0`` (Swin),
    ``blocks.0`` (ViT, DeiT), ``blocks.0.0`` (EfficientNet).
    """
    info = getattr(model, "feature_info", None)
    if info is None:
        raise DyceError(
            f"{type(model).__name__} has no feature_info; pass tap node names", field="taps"
        )
    modules = info.module_name() if hasattr(info, "module_name") else [i["module"] for i in info]
    stages = [m for m in modules if _has_parameters(model.get_submodule(m))]
    stages = _with_siblings(model, stages)
    return [block for stage in stages for block in _stage_blocks(model, stage)]


def _with_siblings(model: nn.Module, stages: Sequence[str]) -> list[str]:
    """``stages`` with the children of their common container between the first and last."""
    from torch import nn

    parents = {stage.rpartition(".")[0] for stage in stages}
    if len(parents) != 1 or not next(iter(parents)):
        return list(stages)
    parent = next(iter(parents))
    container = model.get_submodule(parent)
    if not isinstance(container, (nn.Sequential, nn.ModuleList)):
        return list(stages)
    names = [f"{parent}.{n}" for n, _ in container.named_children()]
    first, last = names.index(stages[0]), names.index(stages[-1])
    return [n for n in names[first : last + 1] if _has_parameters(model.get_submodule(n))]


# --------------------------------------------------------------------------- transforms


def timm_transform(
    model: nn.Module, image_size: int | Sequence[int], *, train: bool = False
) -> Callable:
    """The preprocessing of ``model``'s pretrained config at ``image_size`` pixels.

    Mean, standard deviation, interpolation and centre-crop fraction come from
    ``timm.data.resolve_data_config(model=model)``; the size is ``image_size`` (int or
    (H, W)). ``train`` gives timm's training augmentation (random resized crop, flip, colour
    jitter). The transform maps a PIL image to a float tensor ``(3, H, W)``.
    """
    from timm.data import create_transform, resolve_data_config

    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    config = resolve_data_config({"input_size": (3, *size)}, model=model)
    return create_transform(**config, is_training=train)


def model_transform(
    backbone: nn.Module, splits: Mapping[str, Any], *, train: bool = False
) -> Callable | None:
    """The preprocessing a backbone needs on a split, or None for the dataset's own.

    A timm backbone on an image folder (``splits["dataset"] == "imagefolder"``) gets
    :func:`timm_transform` at the splits' image size: its pretrained weights expect their own
    mean, standard deviation, interpolation and crop fraction. Everything else (torchvision
    backbones, digits, CIFAR at their native size) keeps the dataset's preprocessing.
    """
    if not is_timm_module(backbone) or splits.get("dataset") != "imagefolder":
        return None
    return timm_transform(backbone, splits["image_size"], train=train)


__all__ = [
    "DEFAULT_WEIGHTS",
    "PREFIX",
    "available_timm_models",
    "build_timm_backbone",
    "check_timm_name",
    "fx_options",
    "is_timm_module",
    "is_timm_name",
    "model_transform",
    "pretrained_tag",
    "timm_architecture",
    "timm_block_names",
    "timm_transform",
]
