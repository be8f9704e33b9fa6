"""``dyce import-npz``: convert original DyCE ``.npz`` records to dyce Parquet records."""

from __future__ import annotations

import argparse
import sys
import warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import-npz`` subcommand."""
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
