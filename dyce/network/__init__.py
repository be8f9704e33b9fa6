"""Stage 2, network: backbones, taps, exit heads, the multi-exit network and its training.

- :mod:`dyce.network.models`: backbones by name, taps (torchvision feature extraction),
  ``MultiExitNetwork``, exit checkpoints.
- :mod:`dyce.network.timm_backbones`: timm models as ``timm:NAME`` (building, taps from
  ``feature_info``, fx settings, preprocessing from the pretrained config).
- :mod:`dyce.network.exit_heads`: exit heads ``mlp{L}x{W}`` (global average pooling + MLP).
- :mod:`dyce.network.stages`: a traced backbone cut into sequential stages at its taps.
- :mod:`dyce.network.features`: the pooled-feature cache exit training and recording can run on.
- :mod:`dyce.network.training`: backbone training, exit training (soft distillation).
- :mod:`dyce.network.device`: device, mixed precision and data-loading workers of a run.
"""

from dyce.network.device import loader_workers, resolve_device
from dyce.network.exit_heads import (
    ExitHead,
    ExitType,
    build_exit_head,
    parse_exit_type,
    parse_exit_types,
)
from dyce.network.features import (
    FeatureCache,
    cache_features,
    concat_features,
    open_feature_cache,
)
from dyce.network.models import (
    DEFAULT_EXIT_TYPES,
    MultiExitNetwork,
    SmallResNet,
    available_models,
    build_backbone,
    build_multi_exit_network,
    default_taps,
    graph_node_names,
    is_known_model,
    load_exits_checkpoint,
    probe_tap_features,
    read_exits_checkpoint,
    resolve_taps,
    save_exits_checkpoint,
    tap_extractor,
    validate_taps,
)
from dyce.network.stages import run_stages, split_stages
from dyce.network.timm_backbones import model_transform
from dyce.network.training import (
    TrainResult,
    evaluate_accuracy,
    load_backbone,
    prepare_exit_network,
    save_backbone,
    train_backbone,
    train_exits,
)

__all__ = [
    "DEFAULT_EXIT_TYPES",
    "ExitHead",
    "ExitType",
    "FeatureCache",
    "MultiExitNetwork",
    "SmallResNet",
    "TrainResult",
    "available_models",
    "build_backbone",
    "build_exit_head",
    "build_multi_exit_network",
    "cache_features",
    "concat_features",
    "default_taps",
    "evaluate_accuracy",
    "graph_node_names",
    "is_known_model",
    "load_backbone",
    "load_exits_checkpoint",
    "model_transform",
    "loader_workers",
    "open_feature_cache",
    "parse_exit_type",
    "parse_exit_types",
    "prepare_exit_network",
    "probe_tap_features",
    "read_exits_checkpoint",
    "resolve_device",
    "resolve_taps",
    "run_stages",
    "save_backbone",
    "save_exits_checkpoint",
    "split_stages",
    "tap_extractor",
    "train_backbone",
    "train_exits",
    "validate_taps",
]
