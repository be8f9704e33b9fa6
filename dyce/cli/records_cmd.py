"""``dyce import-npz`` (original ``.npz`` records to Parquet) and ``dyce concat-records``."""

from __future__ import annotations

import argparse
import sys
import warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import-npz`` and ``concat-records`` subcommands."""
    _register_concat_records(subparsers)
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
    from dyce.macs_info import load_macs_info
    from dyce.npz import convert_npz

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


def _register_concat_records(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "concat-records", help="join record shards (dyce record --shard) into one records file",
        description="Join the Parquet shards written by dyce record --shard 1/K … K/K (give "
        "them in order) into the records file one job would have written, one row group at a "
        "time.",
    )
    parser.add_argument("shards", nargs="+", metavar="SHARD.parquet", help="shards 1/K … K/K")
    parser.add_argument("--out", required=True, metavar="RECORDS.parquet", help="output file")
    parser.set_defaults(func=_concat_records)


def _concat_records(args: argparse.Namespace) -> int:
    from dyce.shards import concat_records

    count = concat_records(args.shards, args.out)
    print(f"{args.out}: {count} samples from {len(args.shards)} shards")
    return 0
