"""``dyce record`` and ``dyce import-npz``: exit records from a network or from original ``.npz``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from dyce.cli.options import add_batch_size, add_device, add_out, add_workers
from dyce.errors import DyceError

RECORD_SPLITS = ("train", "search", "val")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``record`` and ``import-npz``."""
    _register_record(subparsers)
    _register_import_npz(subparsers)


# --------------------------------------------------------------------------- record


def _register_record(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "record", help="record every exit's top-k predictions on one split (Parquet)",
        description="Run the multi-exit network over one split and write, for every sample, "
        "its label and the top-k classes and softmax probabilities of every exit and of the "
        "final head.",
    )
    parser.add_argument("--exits", type=Path, required=True, help="EXITS.pt")
    parser.add_argument("--data", type=Path, required=True, help="SPLITS.json")
    parser.add_argument("--split", choices=RECORD_SPLITS, required=True)
    parser.add_argument("--topk", type=int, default=1, help="classes kept per exit (default 1)")
    add_batch_size(parser, 256)
    add_device(parser)
    add_workers(parser)
    add_out(parser, "RECORDS.parquet")
    parser.set_defaults(func=_record)


def _record(args: argparse.Namespace) -> int:
    from dyce.data.splits import load_split, load_splits
    from dyce.network.models import load_exits_checkpoint
    from dyce.records.recording import record_split

    splits = load_splits(args.data)
    net = load_exits_checkpoint(args.exits)
    spec = dict(net.spec)
    for key, data_key in (("num_classes", "num_classes"), ("in_channels", "in_channels"),
                          ("input_size", "image_size")):
        if spec.get(key) is not None and spec[key] != splits[data_key]:
            raise DyceError(
                f"exits were trained with {key}={spec[key]}, but {args.data} has "
                f"{splits[data_key]}", path=args.exits, field=key,
            )
    dataset = load_split(splits, args.split)
    count = record_split(
        net, dataset, topk=args.topk, batch_size=args.batch_size, device=args.device,
        out_path=args.out, model=str(spec.get("model", "")), dataset_name=splits["dataset"],
        split=args.split, num_workers=args.workers,
    )
    print(f"{args.out}: {count} samples of split '{args.split}'", file=sys.stdout)
    return 0


# --------------------------------------------------------------------------- import-npz


def _register_import_npz(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-npz",
        help="convert original DyCE .npz records to Parquet records (never unpickles)",
        description="Read records saved by the original DyCE OutputRecorder (label, preds, "
        "confs; loaded without pickle) and write them as dyce Parquet records. The .npz does "
        "not name its exit types: give them with --exit-types or take them from --macs-info.",
    )
    parser.add_argument("record", metavar="RECORD.npz", help="original .npz records")
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument("--exit-types", metavar="N1,N2,...",
                       help="comma-separated exit-type names, in the order of the record")
    names.add_argument("--macs-info", metavar="MACS.json",
                       help="macs_info JSON; its head names are the exit types")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="number of classes (default: largest label or prediction + 1)")
    parser.add_argument("--model", default="", help="model name stored with the records")
    parser.add_argument("--dataset", default="", help="dataset name stored with the records")
    parser.add_argument("--split", default="", help="split name stored with the records")
    parser.add_argument("--skip-meta-info", action="store_true",
                        help="leave a pickled meta_info (a dict saved by the original release) "
                        "unread instead of refusing the file; it is never unpickled")
    parser.add_argument("--out", required=True, metavar="RECORD.parquet", help="output file")
    parser.set_defaults(func=run_import_npz)


def run_import_npz(args: argparse.Namespace) -> int:
    """Convert ``args.record`` to ``args.out`` and print a one-line summary."""
    from dyce.macs.info import load_macs_info
    from dyce.records.npz import convert_npz

    macs = None if args.macs_info is None else load_macs_info(args.macs_info)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = convert_npz(
            args.record, args.out, args.exit_types if macs is None else macs,
            num_classes=args.num_classes, model=args.model, dataset=args.dataset,
            split=args.split, skip_pickled_meta_info=args.skip_meta_info,
        )
    for warning in caught:
        print(f"dyce import-npz: warning: {warning.message}", file=sys.stderr)
    print(
        f"wrote {args.out}: {records.num_samples} samples, {records.num_positions} positions x "
        f"{records.num_exit_types} exit types ({records.num_exits} exits), top-{records.topk}, "
        f"{records.num_classes} classes, final-head accuracy {records.final_accuracy:.4f}"
    )
    return 0
