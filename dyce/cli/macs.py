"""``dyce macs``: MACs of a backbone and its exit heads, written as ``macs_info`` JSON."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``macs`` subcommand."""
    parser = subparsers.add_parser(
        "macs",
        help="count MACs of a backbone up to every exit position and of every exit head (thop)",
        description="Count MACs (one sample) of a backbone up to every tap and of every exit "
        "head, and write them in the DyCE macs_info JSON format. Weights are not needed: "
        "the model is built with random weights.",
    )
    parser.add_argument("--model", help="torchvision classification model or small_resnet8/14/20")
    parser.add_argument("--input-size", type=int, help="input height = width in pixels")
    parser.add_argument("--num-classes", type=int, default=1000, help="classes (default 1000)")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    parser.add_argument(
        "--exit-types",
        default=None,
        help="comma-separated exit types (default mlp1x1000,mlp3x500,mlp3x1000,mlp5x500,mlp5x1000)",
    )
    parser.add_argument(
        "--taps", default="auto", help="'auto' (after every block) or comma-separated node names"
    )
    parser.add_argument(
        "--exits",
        metavar="EXITS.pt",
        help="take model, taps, exit types and sizes from this exits checkpoint",
    )
    parser.add_argument(
        "--count-batchnorm",
        action="store_true",
        help="count batch norm as thop does (2 per element) instead of folded (0)",
    )
    parser.add_argument("--out", required=True, metavar="MACS.json", help="output JSON file")
    parser.set_defaults(func=run_macs)


def run_macs(args: argparse.Namespace) -> int:
    """Compute ``macs_info`` and write it atomically to ``args.out``."""
    from dyce.errors import DyceError
    from dyce.macs.counting import macs_info_for, write_macs_info
    from dyce.network.models import read_exits_checkpoint

    if args.exits is not None:
        spec = read_exits_checkpoint(args.exits)["spec"]
        info = macs_info_for(spec, fold_batchnorm=not args.count_batchnorm)
    else:
        if args.model is None or args.input_size is None:
            raise DyceError("give --model and --input-size, or --exits EXITS.pt")
        info = macs_info_for(
            args.model,
            input_size=args.input_size,
            in_channels=args.in_channels,
            num_classes=args.num_classes,
            exit_types=args.exit_types,
            taps=args.taps,
            fold_batchnorm=not args.count_batchnorm,
        )
    write_macs_info(args.out, info)
    backbone = info["backbone"]
    print(
        f"{backbone['name']}: {len(backbone['macs'])} positions, "
        f"{backbone['ori_macs'] / 1e9:.4f} GMACs, written to {args.out}"
    )
    return 0
