"""``dyce evaluate``: the figures of searched configurations on validation records."""

from __future__ import annotations

import argparse

from dyce.cli.options import add_macs_info, add_no_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate searched configurations on validation records",
        description="Evaluate every configuration of the result tables on VAL records and add "
        "relative_macs, raw_macs, relative_acc, raw_acc and exit_ratio.",
    )
    parser.add_argument("results", nargs="+", metavar="RESULT.parquet")
    parser.add_argument("--records", required=True, metavar="VAL",
                          help="validation records (.parquet or .npz)")
    add_macs_info(parser)
    add_no_progress(parser)
    parser.add_argument("--out", required=True, metavar="EVAL.parquet")
    parser.set_defaults(func=run_evaluate)


# --------------------------------------------------------------------------- evaluate


def run_evaluate(args: argparse.Namespace) -> int:
    import polars as pl

    from dyce.macs.info import load_macs_info
    from dyce.records.npz import load_any_records
    from dyce.report.tables import (
        SEARCH_SCHEMA,
        check_exit_table,
        evaluate_table,
        read_tables,
        write_table,
    )

    tables = read_tables(args.results, required=tuple(SEARCH_SCHEMA))
    macs = load_macs_info(args.macs_info)
    records = load_any_records(args.records, macs)
    evaluated = []
    for path, (df, metadata) in zip(args.results, tables, strict=True):
        check_exit_table(metadata, records, path)
        evaluated.append(evaluate_table(df, records, macs, source=path, progress=args.progress))
    table = pl.concat(evaluated, how="diagonal_relaxed")
    metadata = dict(tables[0][1])
    metadata.update(evaluation_records=str(args.records), evaluation_split=records.split,
                    evaluation_num_samples=records.num_samples,
                    search_tables=[str(p) for p in args.results])
    write_table(table, args.out, metadata)
    print(f"dyce evaluate: {table.height} configurations → {args.out}")
    return 0
