"""MACs of a backbone up to every tap and of every exit head, counted with thop.

The result is the seed's ``macs_info`` dictionary (see :mod:`dyce.macs.info`)::

    {"head": [{"name": "mlp1x1000", "macs": [P values, 0 last], "params": [P values, 0 last]}, …],
     "backbone": {"name": "resnet50", "macs": [P cumulative values, last = ori_macs],
                  "ori_macs": int, "params": [P values], "ori_params": int,
                  "positions": [P-1 tap names, "final"], "input_size": [H, W], "in_channels": int}}

All counts are for one sample (batch 1). Batch norm counts nothing by default (folded into the
preceding convolution at inference, as in torchvision's published figures). ``backbone.macs[p]`` for ``p < P-1`` is the thop count
of the feature extractor truncated at tap p (every node the tap depends on); the last entry is the
thop count of the whole backbone. Head MACs are the head's Linear layers plus its global average
pooling (one add per input element and one divide per channel, as thop counts
``AdaptiveAvgPool2d``). thop (``ultralytics-thop``) counts module layers and the functional
products (matmul, linear, attention) that run inside a forward.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from dyce.errors import DyceError
from dyce.network.exit_heads import (
    DEFAULT_EXIT_TYPES,
    GlobalPool,
    build_exit_head,
    parse_exit_types,
)
from dyce.network.models import (
    MultiExitNetwork,
    build_backbone,
    graph_node_names,
    probe_tap_features,
    resolve_taps,
    size_pair,
    tap_extractor,
)


def _count_global_pool(module: GlobalPool, inputs: tuple, output: torch.Tensor) -> None:
    """thop rule for :class:`GlobalPool`: one add per input element, one divide per output."""
    if module.layout == "vector":
        return
    module.total_ops += inputs[0].numel() + output.numel()


def _folded_batchnorm(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
    """thop rule for batch norm at inference: folded into the preceding layer, no MACs."""


CUSTOM_OPS: dict[type, Any] = {GlobalPool: _count_global_pool}


def count_macs(model: nn.Module, inputs: tuple, *, fold_batchnorm: bool = True) -> tuple[int, int]:
    """thop ``(MACs, parameters)`` of ``model(*inputs)`` (eval mode, no gradients).

    ``fold_batchnorm``: batch norm costs nothing (at inference it folds into the convolution
    before it; torchvision's published figures count it so); False keeps thop's 2 per element.
    """
    import thop

    custom_ops = dict(CUSTOM_OPS)
    if fold_batchnorm:
        custom_ops[nn.modules.batchnorm._BatchNorm] = _folded_batchnorm
    macs, params = thop.profile(model, inputs=inputs, custom_ops=custom_ops, verbose=False)
    return int(round(float(macs))), int(round(float(params)))


def truncated_extractor(extractor: nn.Module, key: str) -> fx.GraphModule:
    """The eval graph of a ``create_feature_extractor`` module cut after the output ``key``.

    Nodes after the tap are dropped, then every node the tap does not depend on (dead code;
    shape assertions stay), so the module computes exactly the backbone up to that tap.
    """
    source = extractor.eval_graph
    output_node = next(node for node in source.nodes if node.op == "output")
    outputs = output_node.args[0]
    target = outputs[key]
    graph = fx.Graph()
    value_map: dict[fx.Node, fx.Node] = {}
    for node in source.nodes:  # nodes after the tap cannot feed it; side-effect nodes there
        value_map[node] = graph.node_copy(node, value_map.__getitem__)  # (asserts) would stay
        if node is target:
            break
    graph.output(value_map[target])
    module = fx.GraphModule(extractor, graph)
    module.graph.eliminate_dead_code()
    module.recompile()
    module.delete_all_unused_submodules()
    module.eval()
    return module


def _backbone_macs(
    backbone: nn.Module,
    taps: Sequence[str],
    input_size: tuple[int, int],
    in_channels: int,
    fold_batchnorm: bool,
) -> tuple[list[int], list[int], int, int, list[tuple[int, ...]], list[str]]:
    nodes = graph_node_names(backbone)
    extractor = tap_extractor(backbone, taps, nodes[-1])
    shapes, layouts, _ = probe_tap_features(
        backbone, extractor, len(taps), input_size, in_channels, "cpu"
    )
    dummy = torch.zeros(1, in_channels, *input_size)
    ori_macs, ori_params = count_macs(backbone, (dummy,), fold_batchnorm=fold_batchnorm)
    macs, params = [], []
    for index in range(len(taps)):
        truncated = truncated_extractor(extractor, f"tap{index}")
        tap_macs, tap_params = count_macs(truncated, (dummy,), fold_batchnorm=fold_batchnorm)
        macs.append(tap_macs)
        params.append(tap_params)
    return macs + [ori_macs], params + [ori_params], ori_macs, ori_params, shapes, layouts


def _head_table(
    exit_types: Sequence[str],
    shapes: Sequence[tuple[int, ...]],
    layouts: Sequence[str],
    num_classes: int,
) -> list[dict[str, Any]]:
    """Per exit type: MACs and parameters at every position (0 at the final position)."""
    cache: dict[tuple, tuple[int, int]] = {}
    table = []
    for name in exit_types:
        macs, params = [], []
        for shape, layout in zip(shapes, layouts, strict=True):
            key = (name, tuple(shape), layout)
            if key not in cache:  # one head at a time: all of them at once can take gigabytes
                head = build_exit_head(name, shape, num_classes, layout)
                cache[key] = count_macs(head, (torch.zeros(1, *shape),))
            macs.append(cache[key][0])
            params.append(cache[key][1])
        table.append({"name": name, "macs": macs + [0], "params": params + [0]})
    return table


def macs_info_for(
    model_or_spec: str | nn.Module | MultiExitNetwork | dict[str, Any],
    *,
    input_size: int | Sequence[int] | None = None,
    in_channels: int = 3,
    num_classes: int = 1000,
    exit_types: str | Sequence[str] | None = DEFAULT_EXIT_TYPES,
    taps: str | Sequence[str] | None = "auto",
    name: str | None = None,
    fold_batchnorm: bool = True,
) -> dict[str, Any]:
    """``macs_info`` (seed format, one sample) for a backbone and exit heads at its taps.

    ``model_or_spec`` is a model name (built with random weights: MACs do not depend on them), a
    backbone module, a :class:`~dyce.network.models.MultiExitNetwork` (its taps, exit types, heads and
    input size are used, the keyword arguments ignored) or a network spec dictionary. Counting
    runs on CPU (a backbone on another device is copied there). ``fold_batchnorm`` as in
    :func:`count_macs`.
    ``input_size`` is in pixels (int or (H, W)); required unless a network or spec gives it.
    """
    if isinstance(model_or_spec, MultiExitNetwork):
        net = model_or_spec
        backbone, tap_names = net.backbone, list(net.tap_nodes)
        exit_types, num_classes = list(net.exit_types), net.num_classes
        input_size, in_channels = net.input_size, net.in_channels
        name = name or net.spec.get("model")
    else:
        if isinstance(model_or_spec, dict):
            spec = model_or_spec
            missing = [k for k in ("model", "num_classes", "input_size") if k not in spec]
            if missing:
                raise DyceError(f"missing {', '.join(missing)}", field="spec")
            model_or_spec = spec["model"]
            input_size = spec["input_size"]
            in_channels = spec.get("in_channels", 3)
            num_classes = spec["num_classes"]
            exit_types = spec.get("exit_types", exit_types)
            taps = spec.get("taps", taps)
        if input_size is None:
            raise DyceError("input size is required", field="input_size")
        if isinstance(model_or_spec, str):
            name = name or model_or_spec
            backbone = build_backbone(
                model_or_spec,
                num_classes=num_classes,
                in_channels=in_channels,
                input_size=input_size,
            )
        elif isinstance(model_or_spec, nn.Module):
            backbone = model_or_spec
            name = name or type(backbone).__name__
        else:
            raise DyceError(f"cannot measure MACs of a {type(model_or_spec).__name__}")
        exit_types = parse_exit_types(exit_types)
        tap_names = resolve_taps(backbone, taps)
    size = size_pair(input_size)
    if any(p.device.type != "cpu" for p in backbone.parameters()):
        backbone = copy.deepcopy(backbone).to("cpu")
    macs, params, ori_macs, ori_params, shapes, layouts = _backbone_macs(
        backbone, tap_names, size, in_channels, fold_batchnorm
    )
    head_table = _head_table(exit_types, shapes, layouts, num_classes)
    return {
        "head": head_table,
        "backbone": {
            "name": name,
            "macs": macs,
            "ori_macs": ori_macs,
            "params": params,
            "ori_params": ori_params,
            "positions": list(tap_names) + ["final"],
            "input_size": list(size),
            "in_channels": int(in_channels),
        },
    }


def write_macs_info(path: str | os.PathLike, info: dict[str, Any]) -> None:
    """Validate and write ``info`` as JSON atomically (see :func:`dyce.macs.info.save_macs_info`)."""
    from dyce.macs.info import save_macs_info

    save_macs_info(path, info)
