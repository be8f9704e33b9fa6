"""``dyce record``, ``dyce concat-records`` and ``dyce import-npz``: exit records from a network,
from record shards or from original ``.npz`` files."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from dyce.cli.options import (
    RECORD_SPLITS,
    add_amp,
    add_batch_size,
    add_device,
    add_out,
    add_shard,
    add_workers,
    job_workers,
    print_split_warnings,
)
from dyce.errors import DyceError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``record``, ``concat-records`` and ``import-npz``."""
    _register_record(subparsers)
    _register_concat_records(subparsers)
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
    parser.add_argument("--features", type=Path, default=None, metavar="DIR",
                        help="run the exit heads on this feature cache of the split (dyce "
                        "cache-features) instead of the whole network")
    add_batch_size(parser, 256)
    add_device(parser)
    add_workers(parser)
    add_amp(parser)
    add_shard(parser)
    add_out(parser, "RECORDS.parquet")
    parser.set_defaults(func=_record)


def _record(args: argparse.Namespace) -> int:
    from dyce.data.shards import parse_shard
    from dyce.data.splits import load_split, load_splits
    from dyce.network.models import load_exits_checkpoint
    from dyce.network.timm_backbones import model_transform
    from dyce.records.recording import record_features, record_split

    splits = load_splits(args.data)
    print_split_warnings("record", splits)
    net = load_exits_checkpoint(args.exits)
    spec = dict(net.spec)
    for key, data_key in (("num_classes", "num_classes"), ("in_channels", "in_channels"),
                          ("input_size", "image_size")):
        if spec.get(key) is not None and spec[key] != splits[data_key]:
            raise DyceError(
                f"exits were trained with {key}={spec[key]}, but {args.data} has "
                f"{splits[data_key]}", path=args.exits, field=key,
            )
    shard = parse_shard(args.shard)
    if args.features is not None:
        if shard is not None:
            raise DyceError("record from a feature cache in one job (it runs the heads only)",
                            field="shard")
        count = record_features(
            net, args.features, topk=args.topk, batch_size=args.batch_size, device=args.device,
            out_path=args.out, model=str(spec.get("model", "")),
            sample_ids=splits["splits"][args.split],
        )
    else:
        count = record_split(
            net, load_split(splits, args.split, transform=model_transform(net.backbone, splits)),
            topk=args.topk, batch_size=args.batch_size,
            device=args.device, out_path=args.out, model=str(spec.get("model", "")),
            dataset_name=splits["dataset"], split=args.split, num_workers=job_workers(args),
            amp=args.amp, shard=shard,
        )
    part = "" if shard is None else f" (shard {shard})"
    print(f"{args.out}: {count} samples of split '{args.split}'{part}", file=sys.stdout)
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
    from dyce.data.shards import concat_records

    count = concat_records(args.shards, args.out)
    print(f"{args.out}: {count} samples from {len(args.shards)} shards")
    return 0
