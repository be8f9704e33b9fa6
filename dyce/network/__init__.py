"""Stage 2, network: backbones, taps, exit heads, the multi-exit network and its training.

Importing the package is torch-free: a name loads its module (and torch) on first use.

- :mod:`dyce.network.architectures`: the backbone names known without torch (small ResNets).
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

#: Public name -> the submodule that defines it.
_SUBMODULE = {
    "available_models": "models",
    "build_backbone": "models",
    "build_exit_head": "exit_heads",
    "build_multi_exit_network": "models",
    "cache_features": "features",
    "concat_features": "features",
    "DEFAULT_EXIT_TYPES": "models",
    "default_taps": "models",
    "evaluate_accuracy": "training",
    "ExitHead": "exit_heads",
    "ExitType": "exit_heads",
    "FeatureCache": "features",
    "graph_node_names": "models",
    "is_known_model": "models",
    "load_backbone": "training",
    "load_exits_checkpoint": "models",
    "loader_workers": "device",
    "model_transform": "timm_backbones",
    "MultiExitNetwork": "models",
    "open_feature_cache": "features",
    "parse_exit_type": "exit_heads",
    "parse_exit_types": "exit_heads",
    "prepare_exit_network": "training",
    "probe_tap_features": "models",
    "read_exits_checkpoint": "models",
    "resolve_device": "device",
    "resolve_taps": "models",
    "run_stages": "stages",
    "save_backbone": "training",
    "save_exits_checkpoint": "models",
    "SmallResNet": "models",
    "split_stages": "stages",
    "tap_extractor": "models",
    "train_backbone": "training",
    "train_exits": "training",
    "TrainResult": "training",
    "validate_taps": "models",
}

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


def __getattr__(name: str):
    """Load the submodule defining ``name`` on first use (import statements, not importlib,
    so that the static import closure of ``dyce workflow-info`` sees them)."""
    if name not in _SUBMODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from dyce.network import (
        device,
        exit_heads,
        features,
        models,
        stages,
        timm_backbones,
        training,
    )

    modules = {
        "device": device,
        "exit_heads": exit_heads,
        "features": features,
        "models": models,
        "stages": stages,
        "timm_backbones": timm_backbones,
        "training": training,
    }
    return getattr(modules[_SUBMODULE[name]], name)
