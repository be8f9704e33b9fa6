"""``dyce evaluate``: the figures of searched configurations on validation records."""

from __future__ import annotations

import argparse

from dyce.cli.options import add_macs_info, add_no_progress, warn_if_chance_level


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate searched (or selected) configurations on validation records",
        description="Evaluate every configuration of the result tables on VAL records and add "
        "relative_macs, raw_macs, relative_acc, raw_acc and exit_ratio. CHOICE.json files "
        "(dyce select) give one row per method, with macs_saved, accuracy_drop and "
        "met_tolerance: whether the promise made on the calibration split held on VAL.",
    )
    parser.add_argument("results", nargs="+", metavar="RESULT.parquet|CHOICE.json")
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
    from dyce.runtime.selection import choice_table, promise_columns, read_choice

    choices = {path: read_choice(path) for path in args.results if str(path).endswith(".json")}
    tables = [(choice_table(choices[path]), {"choice": str(path)}) if path in choices
              else read_tables([path], required=tuple(SEARCH_SCHEMA))[0] for path in args.results]
    macs = load_macs_info(args.macs_info)
    records = load_any_records(args.records, macs)
    warned = warn_if_chance_level("evaluate", records)
    evaluated = []
    for path, (df, metadata) in zip(args.results, tables, strict=True):
        check_exit_table(metadata, records, path)
        table = evaluate_table(df, records, macs, source=path, progress=args.progress)
        if path in choices:
            table = promise_columns(table)
            _print_promises(table, records)
        evaluated.append(table)
    table = pl.concat(evaluated, how="diagonal_relaxed")
    metadata = dict(tables[0][1])
    metadata.update(evaluation_records=str(args.records), evaluation_split=records.split,
                    evaluation_num_samples=records.num_samples,
                    search_tables=[str(p) for p in args.results],
                    warnings=list(dict.fromkeys([*metadata.get("warnings", []), *warned])))
    write_table(table, args.out, metadata)
    print(f"dyce evaluate: {table.height} configurations → {args.out}")
    return 0


def _print_promises(table, records) -> None:
    """One line per selected configuration: did its calibration promise hold on ``records``?"""
    for row in table.iter_rows(named=True):
        held = "held" if row["met_tolerance"] else "NOT held"
        chosen = "" if row["passed"] else " (nothing passed on calib: the original model)"
        print(f"dyce evaluate: {row['method']}{chosen}: {100 * row['macs_saved']:.1f} % MACs "
              f"saved, accuracy drop {100 * row['accuracy_drop']:.2f} % on "
              f"{records.num_samples} {records.split or 'evaluation'} samples; promise "
              f"≤ {100 * row['tolerance']:g} % {held}")
