"""``dyce prepare-data``: fix the train/search/val splits of a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from dyce.cli.options import add_out, print_split_warnings

SEARCH_SPLITS = ("heldout", "train")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prepare-data``."""
    _register_prepare_data(subparsers)


# --------------------------------------------------------------------------- prepare-data


def _register_prepare_data(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare-data",
        help="fix the train/search/calib/val splits of a dataset (SPLITS.json)",
        description="Choose the train, search, calib and val samples of a dataset from a seed "
        "and write them as JSON. Datasets: digits (bundled, offline), digits_deformed (the "
        "digits with --copies label-preserving deformed versions of each image, split by "
        "source image; offline), cifar10, cifar100 (torchvision; --download fetches them into "
        "--root), imagefolder (--root with train/ and val/).",
    )
    parser.add_argument("--dataset", required=True,
                        help="digits, digits_deformed, cifar10, cifar100 or imagefolder")
    parser.add_argument("--root", type=Path, default=None, help="data folder (not for digits)")
    parser.add_argument("--download", action="store_true",
                        help="download CIFAR into --root when it is not there")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="digits and digits_deformed only: stratified fraction held out for "
                        "val (default 0.2); the other datasets use their official test/val split")
    parser.add_argument("--search-split", choices=SEARCH_SPLITS, default="heldout",
                        help="search on a held-out part of the training data (default) or on "
                        "the training data itself (the original DyCE)")
    parser.add_argument("--search-fraction", type=float, default=0.2,
                        help="stratified fraction of the training pool held out for the search "
                        "(default 0.2)")
    parser.add_argument("--calib-fraction", type=float, default=0.0,
                        help="stratified fraction of the training pool held out as the calib "
                        "split, used only by dyce select (default 0: none)")
    parser.add_argument("--copies", type=int, default=None,
                        help="digits_deformed: versions of each source image (default 16)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side in pixels (default: 8 digits, 32 CIFAR, 224 imagefolder)")
    add_out(parser, "SPLITS.json")
    parser.set_defaults(func=_prepare_data)


def _prepare_data(args: argparse.Namespace) -> int:
    from dyce.data.splits import prepare_splits
    from dyce.io import write_json

    splits = prepare_splits(
        args.dataset, root=args.root, seed=args.seed, val_fraction=args.val_fraction,
        search_split=args.search_split, search_fraction=args.search_fraction,
        calib_fraction=args.calib_fraction, download=args.download,
        image_size=args.image_size, copies=args.copies,
    )
    write_json(args.out, splits)
    print_split_warnings("prepare-data", splits)
    sizes = ", ".join(f"{name} {len(indices)}" for name, indices in splits["splits"].items())
    print(f"{args.out}: {splits['dataset']} ({splits['num_classes']} classes, "
          f"{splits['image_size']} px): {sizes}")
    return 0
