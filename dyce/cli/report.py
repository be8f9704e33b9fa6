"""``dyce plot`` and ``dyce summary``: Pareto plots and the MACs-saved table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plot`` and ``summary``."""
    plot = subparsers.add_parser(
        "plot",
        help="Pareto plot of front tables with every single exit and the original model",
        description="Plot validation relative MACs against relative accuracy: the front of "
        "every FRONT table (one per method), every single exit of VAL records as a point and "
        "the original model at (1, 1). The format follows the suffix of --out (png, pdf, svg).",
    )
    plot.add_argument("fronts", nargs="+", type=Path, metavar="FRONT.parquet")
    plot.add_argument("--records", required=True, type=Path, metavar="VAL.parquet",
                      help="validation records (for the single-exit points)")
    plot.add_argument("--macs-info", required=True, type=Path, metavar="MACS.json")
    plot.add_argument("--title", default=None, help="figure title")
    plot.add_argument("--tolerance", type=float, default=0.005,
                      help="accuracy drop drawn as a reference line (default 0.005)")
    plot.add_argument("--out", required=True, type=Path, metavar="PLOT.png")
    plot.set_defaults(func=run_plot)

    summary = subparsers.add_parser(
        "summary",
        help="MACs saved at a given accuracy drop, per model, dataset and method",
        description="For every (model, dataset, method) of the FRONT tables: the relative MACs "
        "saved by the cheapest configuration whose validation relative accuracy is at least "
        "1 - TOLERANCE. Written as CSV (or Parquet when --out ends in .parquet) and printed.",
    )
    summary.add_argument("fronts", nargs="+", type=Path, metavar="FRONT.parquet")
    summary.add_argument("--tolerance", type=float, default=0.005,
                         help="relative accuracy drop allowed (default 0.005 = 0.5 %%)")
    summary.add_argument("--selected", nargs="+", type=Path, default=[], metavar="PROMISE.parquet",
                         help="'dyce evaluate CHOICE.json' tables: adds, per method, the "
                         "validation MACs saved and accuracy drop of the configuration chosen "
                         "without validation (dyce select) and whether it met its tolerance")
    summary.add_argument("--out", required=True, type=Path, metavar="SUMMARY.csv")
    summary.add_argument("--html", type=Path, default=None, metavar="SUMMARY.html",
                         help="also write the table as an HTML page (shown inline by "
                         "Snakemake's report)")
    summary.add_argument("--caption", default="",
                         help="caption of the HTML table (default none)")
    summary.set_defaults(func=run_summary)


def _read_fronts(paths: list[Path], command: str):
    """The front tables, each with a ``warning`` column from its metadata (printed once)."""
    import polars as pl

    from dyce.report.tables import read_tables

    fronts = []
    for df, metadata in read_tables(paths, required=("method", "relative_macs", "relative_acc")):
        warnings = list(dict.fromkeys(metadata.get("warnings") or []))
        for warning in warnings:
            print(f"dyce {command}: WARNING: {warning}", file=sys.stderr)
        fronts.append(df.with_columns(
            pl.lit("; ".join(warnings) or None, dtype=pl.String).alias("warning")))
    return fronts


def run_plot(args: argparse.Namespace) -> int:
    """Draw the Pareto plot."""
    from dyce.macs.info import load_macs_info
    from dyce.records.format import read_records
    from dyce.report.plots import save_pareto_plot
    from dyce.report.tables import single_exit_points

    fronts = _read_fronts(args.fronts, "plot")
    single_exits = single_exit_points(read_records(args.records), load_macs_info(args.macs_info))
    save_pareto_plot(args.out, fronts, single_exits, title=args.title, tolerance=args.tolerance)
    print(f"{args.out}: {len(fronts)} fronts, {single_exits.height - 1} single exits")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    """Write the MACs-saved table."""
    import polars as pl

    from dyce.io import atomic_path
    from dyce.report.plots import summary_table

    table = summary_table(_read_fronts(args.fronts, "summary"), args.tolerance)
    shown = ["model", "dataset", "method", "macs_saved", "relative_macs", "relative_acc"]
    if args.selected:
        from dyce.report.tables import read_tables
        from dyce.runtime.selection import selected_columns

        selected = selected_columns([df for df, _ in read_tables(args.selected)])
        table = table.join(selected, on=["model", "dataset", "method"], how="left",
                           nulls_equal=True)
        shown += ["selected_macs_saved", "selected_accuracy_drop", "selected_met_tolerance"]
    with atomic_path(args.out) as tmp:
        if args.out.suffix == ".parquet":
            table.write_parquet(tmp)
        else:
            table.write_csv(tmp)
    if args.html is not None:
        from dyce.report.html import write_html_table

        write_html_table(table, args.html, args.caption)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=40):
        print(table.select(shown))
    for warning in table["warning"].drop_nulls().unique(maintain_order=True):
        print(f"WARNING: {warning}")
    return 0
