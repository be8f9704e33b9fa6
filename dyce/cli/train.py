"""``dyce train-backbone``, ``dyce cache-features``, ``dyce concat-features`` and
``dyce train-exits``: the backbone, its pooled-feature cache and its exit heads."""

from __future__ import annotations

import argparse
from pathlib import Path

from dyce.cli.options import (
    RECORD_SPLITS,
    add_amp,
    add_batch_size,
    add_device,
    add_out,
    add_shard,
    add_splits_and_model,
    add_training_flags,
    add_workers,
    job_workers,
    print_split_warnings,
    training_settings,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-backbone``, ``cache-features``, ``concat-features`` and ``train-exits``."""
    _register_train_backbone(subparsers)
    _register_cache_features(subparsers)
    _register_concat_features(subparsers)
    _register_train_exits(subparsers)


# --------------------------------------------------------------------------- train-backbone


def _register_train_backbone(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-backbone", help="train a backbone from random weights (BACKBONE.pt)",
        description="Train a backbone with cross-entropy on the train split (AdamW, cosine "
        "schedule) and report its accuracy on the val split.",
    )
    add_splits_and_model(parser)
    add_training_flags(parser, epochs=30, lr=3e-3, weight_decay=5e-4)
    add_out(parser, "BACKBONE.pt")
    parser.set_defaults(func=_train_backbone)


def _train_backbone(args: argparse.Namespace) -> int:
    from dyce.data.splits import load_split, load_splits
    from dyce.network.timm_backbones import model_transform
    from dyce.network.training import evaluate_accuracy, save_backbone, train_backbone

    splits = load_splits(args.data)
    print_split_warnings("train-backbone", splits)
    result = train_backbone(splits, args.model, **training_settings(args))
    accuracy = evaluate_accuracy(
        result.model,
        load_split(splits, "val", transform=model_transform(result.model, splits)),
        batch_size=max(args.batch_size, 256),
        device=args.device,
    )
    save_backbone(args.out, result.model, result.spec, result.history,
                  metrics={"val_accuracy": accuracy})
    print(f"{args.out}: {args.model} on {splits['dataset']}, val accuracy {accuracy:.4f}")
    return 0


# --------------------------------------------------------------------------- feature cache


def _register_cache_features(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache-features", help="store every tap's pooled features of one split (a folder)",
        description="Run the frozen backbone once over one split (evaluation transforms) and "
        "store, per sample, every tap's globally pooled feature vector and the final logits, "
        "so that train-exits --features and record --features never run the backbone.",
    )
    add_splits_and_model(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--backbone", type=Path, help="BACKBONE.pt from dyce train-backbone")
    source.add_argument("--weights", help="torchvision weights enum or a state-dict file")
    parser.add_argument("--taps", default="auto",
                        help="auto (after every block) or comma-separated graph node names")
    parser.add_argument("--split", choices=RECORD_SPLITS, required=True)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="storage type of the pooled features (default float32; float16 "
                        "halves the size)")
    add_batch_size(parser, 256)
    add_device(parser)
    add_workers(parser)
    add_amp(parser)
    add_shard(parser)
    add_out(parser, "the cache folder")
    parser.set_defaults(func=_cache_features)


def _cache_features(args: argparse.Namespace) -> int:
    from dyce.data.shards import parse_shard
    from dyce.data.splits import load_split, load_splits
    from dyce.network.features import cache_features
    from dyce.network.timm_backbones import model_transform
    from dyce.network.training import prepare_exit_network

    splits = load_splits(args.data)
    shard = parse_shard(args.shard)
    net = prepare_exit_network(
        splits, args.model, backbone_path=args.backbone, weights=args.weights, taps=args.taps,
        exit_types=["mlp1x1"],  # heads are not cached; the cheapest one builds the network
    )
    count = cache_features(
        net, load_split(splits, args.split, transform=model_transform(net.backbone, splits)),
        out_dir=args.out, batch_size=args.batch_size,
        model=args.model, dataset_name=splits["dataset"], split=args.split, device=args.device,
        dtype=args.dtype, amp=args.amp, num_workers=job_workers(args), shard=shard,
    )
    part = "" if shard is None else f" (shard {shard})"
    print(f"{args.out}: pooled features of {len(net.tap_nodes)} taps for {count} samples of "
          f"split '{args.split}'{part}")
    return 0


def _register_concat_features(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "concat-features", help="join feature-cache shards into one cache",
        description="Join the folders written by cache-features --shard 1/K … K/K (give them "
        "in order) into the cache one job would have written.",
    )
    parser.add_argument("shards", nargs="+", type=Path, help="shard folders, 1/K … K/K")
    add_out(parser, "the cache folder")
    parser.set_defaults(func=_concat_features)


def _concat_features(args: argparse.Namespace) -> int:
    from dyce.network.features import concat_features

    count = concat_features(args.shards, args.out)
    print(f"{args.out}: {count} samples from {len(args.shards)} shards")
    return 0


# --------------------------------------------------------------------------- train-exits


def _register_train_exits(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-exits", help="train every exit head on a frozen backbone (EXITS.pt)",
        description="Attach exit heads of every type at every tap of a frozen backbone and "
        "train them jointly by soft distillation from the final head (mixed with "
        "cross-entropy by --distill-weight).",
    )
    add_splits_and_model(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--backbone", type=Path, help="BACKBONE.pt from dyce train-backbone")
    source.add_argument("--weights", help="torchvision weights enum (e.g. "
                        "ResNet50_Weights.IMAGENET1K_V2), for a timm:NAME model DEFAULT or a "
                        "pretrained tag (e.g. a1_in1k), or a state-dict file")
    parser.add_argument("--taps", default="auto",
                        help="auto (after every block) or comma-separated graph node names")
    parser.add_argument("--exit-types", default=None,
                        help="comma-separated mlp{L}x{W} names (default: the five of the paper)")
    add_training_flags(parser, epochs=20, lr=1e-2, weight_decay=1e-4)
    parser.add_argument("--features", type=Path, default=None, metavar="DIR",
                        help="train on this feature cache of the train split (dyce "
                        "cache-features): the backbone never runs, no augmentation")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="distillation temperature T (default 1)")
    parser.add_argument("--distill-weight", type=float, default=1.0,
                        help="weight of the distillation term; 1 - it weighs cross-entropy "
                        "(default 1: pure soft distillation, as in the paper)")
    add_out(parser, "EXITS.pt")
    parser.set_defaults(func=_train_exits)


def _train_exits(args: argparse.Namespace) -> int:
    import torch

    from dyce.data.splits import load_splits
    from dyce.network.models import save_exits_checkpoint
    from dyce.network.training import prepare_exit_network, train_exits

    splits = load_splits(args.data)
    print_split_warnings("train-exits", splits)
    net = prepare_exit_network(
        splits, args.model, backbone_path=args.backbone, weights=args.weights, taps=args.taps,
        exit_types=args.exit_types, seed=args.seed,
    )
    result = train_exits(
        splits, net, temperature=args.temperature, distill_weight=args.distill_weight,
        features=args.features, **training_settings(args),
    )
    training = {
        "feature_cache": args.features is not None, "amp": args.amp,
        "dataset": splits["dataset"], "epochs": args.epochs, "lr": args.lr,
        "batch_size": args.batch_size, "weight_decay": args.weight_decay,
        "temperature": args.temperature, "distill_weight": args.distill_weight,
        "seed": args.seed, "threads": torch.get_num_threads(), "history": result.history,
        "backbone": None if args.backbone is None else str(args.backbone),
    }
    save_exits_checkpoint(args.out, result.model, extra={"training": training})
    last = result.history[-1]["accuracy"]
    print(f"{args.out}: {len(last) - 1} exits on {args.model}; training accuracy of the exits "
          f"{min(last[:-1]):.3f}..{max(last[:-1]):.3f}, final head {last[-1]:.3f}")
    return 0
