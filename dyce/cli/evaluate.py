"""``dyce evaluate`` and ``dyce front``: searched configurations on validation records, and
the Pareto front of the evaluated ones."""

from __future__ import annotations

import argparse
import sys

from dyce.cli.options import add_macs_info, add_no_progress, warn_if_chance_level
from dyce.errors import DyceError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` and ``front``."""
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

    front = subparsers.add_parser(
        "front",
        help="Pareto front of evaluated configurations",
        description="Sort by relative_macs and keep a row only when its relative_acc is higher "
        "than the last kept row's; one front per group of --by columns.",
    )
    front.add_argument("tables", nargs="+", metavar="EVAL.parquet")
    front.add_argument("--by", default="model,dataset,method",
                       help="comma-separated columns, one front per distinct value "
                       "(default: model,dataset,method; 'none' = one front)")
    front.add_argument("--tolerance", type=float, default=0.005,
                       help="accuracy drop for the printed 'MACs saved' figure (default 0.005)")
    front.add_argument("--out", required=True, metavar="FRONT.parquet")
    front.add_argument("--csv", metavar="FRONT.csv", help="also write the front as CSV")
    front.set_defaults(func=run_front)


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


# --------------------------------------------------------------------------- front


def run_front(args: argparse.Namespace) -> int:
    import polars as pl

    from dyce.report.tables import (
        check_tolerance,
        pareto_front,
        read_tables,
        summary_figures,
        write_csv,
        write_table,
    )

    check_tolerance(args.tolerance)
    tables = read_tables(args.tables, required=("relative_macs", "relative_acc"))
    by = [] if args.by.strip().lower() == "none" else [c.strip() for c in args.by.split(",")
                                                        if c.strip()]
    for path, (df, _) in zip(args.tables, tables, strict=True):
        missing = [c for c in by if c not in df.columns]
        if missing:
            raise DyceError("column missing (used by --by)", path=path, field=missing[0])
    table = pl.concat([df for df, _ in tables], how="diagonal_relaxed")
    front = pareto_front(table, by=by or None)
    metadata = dict(tables[0][1])
    metadata.update(front_tables=[str(p) for p in args.tables], front_by=by)
    summary = summary_figures(front, args.tolerance, by=by)  # everything computed before writing
    for warning in dict.fromkeys(w for _, meta in tables for w in meta.get("warnings", [])):
        print(f"dyce front: WARNING: {warning}", file=sys.stderr)
    if args.csv:
        write_csv(front, args.csv)
    write_table(front, args.out, metadata)
    for row in summary.iter_rows(named=True):
        label = " ".join(str(row[c]) for c in by) or "all"
        saved = row["macs_saved"]
        figure = "no configuration" if saved is None else f"{100 * saved:.1f} % MACs saved"
        print(f"dyce front: {label}: {figure} at ≤ {100 * args.tolerance:g} % accuracy drop")
    return 0
