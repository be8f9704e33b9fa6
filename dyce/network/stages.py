"""Split a backbone into sequential stages at its tap nodes (torch.fx), for real early exiting.

The backbone is traced once with torchvision's feature-extraction tracer (so tap names are the
ones :func:`torchvision.models.feature_extraction.create_feature_extractor` accepts, e.g.
``"layer2"`` or ``"features.3"``), in eval mode. The traced node list is cut after each tap:

    stage 0:      input image      -> tap 0 tensor
    stage p:      tap p-1 tensor   -> tap p tensor
    stage P-1:    tap P-2 tensor   -> final logits

so ``stages[-1](…stages[1](stages[0](x)))`` equals ``backbone(x)``. A cut is only valid when the
tap tensor is the one value that crosses it (a residual branch or the input image used after the
tap would also have to be carried over): such taps raise a :class:`DyceError` naming the tap and
the crossing value. Values that do not depend on the input (parameters, constants) are simply
recomputed in the stage that uses them. Generic over architectures; no per-model code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import fx, nn
from torchvision.models import feature_extraction

from dyce.errors import DyceError
from dyce.network.models import untraceable_error
from dyce.network.timm_backbones import fx_options


def _trace(backbone: nn.Module) -> tuple[fx.GraphModule, dict[fx.Node, str]]:
    """Trace ``backbone`` in eval mode; return the graph module and each node's qualified name."""
    was_training = backbone.training
    backbone.eval()
    options = fx_options(backbone)  # timm's untraceable layers; optional forward arguments fixed
    try:
        # The same tracer settings create_feature_extractor uses, so tap names agree with it.
        tracer_kwargs = feature_extraction._set_default_tracer_kwargs(options.get("tracer_kwargs"))
        tracer = feature_extraction.NodePathTracer(**tracer_kwargs)
        graph = tracer.trace(backbone, concrete_args=options.get("concrete_args"))
    except Exception as error:  # fx raises many types (TraceError, TypeError, …)
        raise untraceable_error(backbone, error) from error
    finally:
        backbone.train(was_training)
    module = fx.GraphModule(tracer.root, graph, backbone.__class__.__name__)
    return module, dict(tracer.node_to_qualname)


def _find_tap(nodes: list[fx.Node], qualnames: dict[fx.Node, str], tap: str) -> int:
    """Index in ``nodes`` of the last node inside ``tap`` (the create_feature_extractor rule)."""
    depth = tap.count(".")
    for index in range(len(nodes) - 1, -1, -1):
        name = qualnames.get(nodes[index])
        if name is not None and ".".join(name.split(".")[: depth + 1]) == tap:
            return index
    raise DyceError(
        f"tap '{tap}' is not a node of the traced backbone (see torchvision's "
        "get_graph_node_names)",
        field="taps",
    )


def _depends_on_input(nodes: list[fx.Node]) -> dict[fx.Node, bool]:
    """Whether each node's value depends (transitively) on a placeholder of the graph."""
    depends: dict[fx.Node, bool] = {}
    for node in nodes:
        depends[node] = node.op == "placeholder" or any(
            depends.get(arg, False) for arg in node.all_input_nodes
        )
    return depends


def _build_stage(
    root: fx.GraphModule,
    body: list[fx.Node],
    input_node: fx.Node | None,
    output_node: fx.Node,
    depends: dict[fx.Node, bool],
    tap_name: str,
) -> fx.GraphModule:
    """A graph module computing ``output_node`` from ``input_node`` with the nodes ``body``.

    ``input_node`` None means the stage takes the graph's own placeholder(s).
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    inside = set(body)

    def copy_constant(node: fx.Node) -> fx.Node:
        # Input-independent value computed before the cut: recompute it here.
        if node not in env:
            for arg in node.all_input_nodes:
                copy_constant(arg)
            env[node] = graph.node_copy(node, lambda n: env[n])
        return env[node]

    if input_node is not None:
        env[input_node] = graph.placeholder("features")
    for node in body:
        for arg in node.all_input_nodes:
            if arg in env or arg in inside:
                continue
            if depends[arg]:  # excluded by _check_no_crossing
                raise AssertionError(f"value '{arg.name}' crosses into stage '{tap_name}'")
            copy_constant(arg)
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(env[output_node])
    stage = fx.GraphModule(root, graph, f"Stage_{tap_name.replace('.', '_')}")
    if stage.graph.eliminate_dead_code():
        stage.recompile()
    return stage.eval()


def split_stages(backbone: nn.Module, tap_nodes: Sequence[str]) -> list[fx.GraphModule]:
    """Cut ``backbone`` after each of ``tap_nodes`` (in forward order) into ``len(tap_nodes)+1`` stages.

    ``stages[0]`` maps the input batch ``(B, C, H, W)`` to the first tap's tensor, ``stages[p]``
    the tap ``p-1`` tensor to the tap ``p`` tensor, and ``stages[-1]`` the last tap's tensor to
    the backbone's output (final logits ``(B, num_classes)``). The stages share the backbone's
    parameters (no copy). Raises :class:`DyceError` for an unknown tap, taps out of forward order,
    or a tap that does not separate the graph.
    """
    if not tap_nodes:
        raise DyceError("at least one tap node is needed to split a backbone", field="taps")
    traced, qualnames = _trace(backbone)
    nodes = list(traced.graph.nodes)
    outputs = [n for n in nodes if n.op == "output"]
    if len(outputs) != 1 or not isinstance(outputs[0].args[0], fx.Node):
        raise DyceError("the backbone must return one tensor (its logits)", field="backbone")
    final_node = outputs[0].args[0]
    placeholders = [n for n in nodes if n.op == "placeholder"]
    required = [n for n in placeholders if not n.args]  # optional inputs carry their default
    if len(required) != 1:
        raise DyceError(
            f"the backbone's forward takes {len(required)} inputs; one image batch is needed",
            field="backbone",
        )
    body_nodes = [n for n in nodes if n.op not in ("placeholder", "output")]
    cut_indices = [_find_tap(body_nodes, qualnames, tap) for tap in tap_nodes]
    for i in range(1, len(tap_nodes)):
        tap_a, tap_b = tap_nodes[i - 1], tap_nodes[i]
        if cut_indices[i] <= cut_indices[i - 1]:
            raise DyceError(
                f"tap '{tap_b}' comes at or before tap '{tap_a}' in the forward pass; list taps "
                "in forward order",
                field="taps",
            )
    final_index = body_nodes.index(final_node)
    if cut_indices[-1] >= final_index:
        raise DyceError(f"tap '{tap_nodes[-1]}' is at or after the backbone's output", field="taps")
    depends = _depends_on_input(nodes)
    _check_no_crossing(body_nodes, cut_indices, final_index, tap_nodes, depends)
    stages = []
    start, input_node = 0, None
    bounds = [*cut_indices, final_index]
    names = [*tap_nodes, "final"]
    for end, name in zip(bounds, names, strict=True):
        body = body_nodes[start : end + 1]
        if input_node is None:
            body = placeholders + body
        stages.append(_build_stage(traced, body, input_node, body_nodes[end], depends, name))
        start, input_node = end + 1, body_nodes[end]
    return stages


def _check_no_crossing(
    body_nodes: list[fx.Node],
    cut_indices: list[int],
    final_index: int,
    tap_nodes: Sequence[str],
    depends: dict[fx.Node, bool],
) -> None:
    """Raise if an input-dependent value other than the tap crosses a cut (named by that tap)."""
    position = {node: i for i, node in enumerate(body_nodes)}
    for tap, cut in zip(tap_nodes, cut_indices, strict=True):
        for node in body_nodes[cut + 1 : final_index + 1]:
            for arg in node.all_input_nodes:
                if arg.op == "placeholder" or (
                    arg in position and position[arg] <= cut and arg is not body_nodes[cut]
                    and depends[arg]
                ):
                    raise DyceError(
                        f"tap '{tap}' does not separate the backbone: value '{arg.name}' computed "
                        "before it is used after it (a branch crossing the tap); choose another tap",
                        field="taps",
                    )


@torch.no_grad()
def run_stages(stages: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Chain all ``stages`` on ``x``; equals the backbone's forward (for tests and checks)."""
    for stage in stages:
        x = stage(x)
    return x
