"""``dyce search``, ``dyce evaluate`` and ``dyce front``: configurations, validation, Pareto front."""

from __future__ import annotations

import argparse
import math
import sys
import warnings

from dyce.cli.options import add_macs_info, add_no_progress
from dyce.errors import DyceError

DYCE_METHODS = ("onepass", "circular", "samethres")
PEER_METHODS = ("global_threshold", "msdnet", "patience")
METHODS = DYCE_METHODS + PEER_METHODS

#: Default λ sweep of the DyCE methods: 0.50, 0.51, …, 1.00.
DEFAULT_LAMBDA_RANGE = (0.5, 1.005, 0.01)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``search``, ``evaluate`` and ``front``."""
    search = subparsers.add_parser(
        "search",
        help="search exit configurations on a record (one row per λ or strategy parameter)",
        description="Search exit configurations on RECORDS and write one row per configuration "
        "with its figures on RECORDS. DyCE methods (onepass, circular, samethres) sweep λ "
        "(default 0.50 … 1.00 step 0.01); peer strategies sweep their own parameter "
        "(global_threshold: threshold 0.00 … 1.00 step 0.01; msdnet: q = p/20, p = 1…39; "
        "patience: t = 1 … P-1), for every exit type unless --exit-type is given.",
    )
    search.add_argument("records", metavar="RECORDS", help="search records (.parquet or .npz)")
    add_macs_info(search)
    search.add_argument("--method", required=True, metavar="M",
                        help=f"one of: {', '.join(METHODS)}")
    search.add_argument("--lambda", dest="lambdas", type=float, nargs="+", action="extend",
                        metavar="L", help="trade-off weight(s) λ ≥ 0 (DyCE methods)")
    search.add_argument("--lambda-range", type=float, nargs=3, metavar=("START", "STOP", "STEP"),
                        help="λ grid START, START+STEP, … below STOP (STOP excluded; DyCE methods)")
    search.add_argument("--parameter", dest="parameters", type=float, nargs="+", action="extend",
                        metavar="V", help="sweep values of a peer strategy (threshold, q or "
                        "patience) instead of its default grid")
    search.add_argument("--exit-type", dest="exit_types", action="append", metavar="K",
                        help="exit type (index or name) for samethres and the peer strategies; "
                        "repeatable (samethres default: 0; peers default: every type)")
    search.add_argument("--no-normalize", dest="normalize", action="store_false",
                        help="search on relative accuracy and MACs instead of the normalised ones")
    search.add_argument("--calibration", action="store_true",
                        help="conservative (10 %% quantile) per-exit accuracy during the search")
    search.add_argument("--model", help="model name for the table (default: from the records)")
    search.add_argument("--dataset", help="dataset name for the table (default: from the records)")
    add_no_progress(search)
    search.add_argument("--out", required=True, metavar="RESULT.parquet")
    search.set_defaults(func=run_search)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="evaluate searched (or selected) configurations on validation records",
        description="Evaluate every configuration of the result tables on VAL records and add "
        "relative_macs, raw_macs, relative_acc, raw_acc and exit_ratio. CHOICE.json files "
        "(dyce select) give one row per method, with macs_saved, accuracy_drop and "
        "met_tolerance: whether the promise made on the calibration split held on VAL.",
    )
    evaluate.add_argument("results", nargs="+", metavar="RESULT.parquet|CHOICE.json")
    evaluate.add_argument("--records", required=True, metavar="VAL",
                          help="validation records (.parquet or .npz)")
    add_macs_info(evaluate)
    add_no_progress(evaluate)
    evaluate.add_argument("--out", required=True, metavar="EVAL.parquet")
    evaluate.set_defaults(func=run_evaluate)

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


# --------------------------------------------------------------------------- search


def lambda_grid(lambdas: list[float] | None, lambda_range: list[float] | None) -> list[float]:
    """The λ values to search: ``--lambda`` values, then ``--lambda-range``, else the default.

    Raises :class:`DyceError` (field ``lambda``) for a negative or non-finite λ or a bad range.
    """

    values = list(lambdas or [])
    if lambda_range is not None:
        start, stop, step = lambda_range
        if not all(math.isfinite(v) for v in lambda_range) or step <= 0 or stop <= start:
            raise DyceError(f"range {start} {stop} {step} needs START < STOP and STEP > 0",
                            field="lambda-range")
        values += arange_values(start, stop, step)
    if not values:
        values = arange_values(*DEFAULT_LAMBDA_RANGE)
    for value in values:
        if not math.isfinite(value) or value < 0:
            raise DyceError(f"λ = {value} is not a number >= 0", field="lambda")
    return values


def arange_values(start: float, stop: float, step: float) -> list[float]:
    """``START, START+STEP, …`` strictly below ``STOP``, free of float noise.

    Unlike ``numpy.arange(0.9, 1.05, 0.05)`` (which also yields 1.05) a value within 1e-9 steps
    of ``STOP`` is excluded, and values are rounded to 12 decimals (1.0000000000000004 → 1.0).
    """
    import numpy as np

    count = max(0, math.ceil((stop - start) / step - 1e-9))
    return [float(v) for v in np.round(start + step * np.arange(count), 12)]


def parse_exit_types(values: list[str] | None, names: tuple[str, ...], path: str) -> list[int] | None:
    """``--exit-type`` values (indices or names) as indices into ``names``."""
    if not values:
        return None
    types = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item in names:
                types.append(names.index(item))
            elif item.lstrip("-").isdigit() and 0 <= int(item) < len(names):
                types.append(int(item))
            else:
                raise DyceError(f"{item!r} is not one of {', '.join(names)} "
                                f"(or an index 0..{len(names) - 1})", path=path, field="exit_type")
    return types


def load_records_for(path: str, macs) -> object:
    """Read ``.npz`` or Parquet records and check them against ``macs`` (positions, exit types)."""
    from dyce.npz import load_any_records

    return load_any_records(path, macs)


def run_search(args: argparse.Namespace) -> int:
    from dyce.macs_info import load_macs_info
    from dyce.results import search_metadata, search_table, write_table

    if args.method not in METHODS:
        raise DyceError(f"unknown method {args.method!r}; choose from {', '.join(METHODS)}",
                        field="method")
    peer = args.method in PEER_METHODS
    if peer and (args.lambdas or args.lambda_range):
        raise DyceError(f"{args.method} sweeps its own parameter; use --parameter, not --lambda",
                        field="lambda")
    if not peer and args.parameters:
        raise DyceError(f"{args.method} sweeps λ; use --lambda, not --parameter",
                        field="parameter")
    lambdas = None if peer else lambda_grid(args.lambdas, args.lambda_range)
    if lambdas is not None and max(lambdas) > 1:
        print(f"dyce search: warning: λ = {max(lambdas)} > 1 rewards MACs: the search will "
              "prefer slower configurations", file=sys.stderr)
    macs = load_macs_info(args.macs_info)
    records = load_records_for(args.records, macs)
    exit_types = parse_exit_types(args.exit_types, records.exit_types, args.macs_info)

    if peer:
        from dyce.strategies import run_strategy

        results = run_strategy(args.method, records, macs, exit_types=exit_types,
                               parameters=args.parameters, calibration=args.calibration,
                               progress=args.progress)
    else:
        results = _search_dyce(args, records, macs, lambdas, exit_types)
    table = search_table(
        results, method=args.method,
        model=args.model if args.model is not None else records.model,
        dataset=args.dataset if args.dataset is not None else records.dataset,
    )
    metadata = search_metadata(records, method=args.method, normalize=args.normalize,
                               calibration=args.calibration, macs_info=str(args.macs_info))
    write_table(table, args.out, metadata)
    print(f"dyce search: {table.height} configurations → {args.out}")
    return 0


def _search_dyce(args, records, macs, lambdas, exit_types) -> list:
    with warnings.catch_warnings():
        # run_search has printed the λ > 1 warning as one line already.
        warnings.filterwarnings("ignore", message="lambda above 1", category=UserWarning)
        return _search_dyce_quiet(args, records, macs, lambdas, exit_types)


def _search_dyce_quiet(args, records, macs, lambdas, exit_types) -> list:
    from dyce.search import search_configs

    if args.method != "samethres":
        if exit_types:
            raise DyceError(f"{args.method} chooses exit types itself; --exit-type is for "
                            "samethres and the peer strategies", field="exit_type")
        return search_configs(records, macs, args.method, lambdas, normalize=args.normalize,
                              calibration=args.calibration, progress=args.progress)
    results = []
    for exit_type in exit_types or [0]:
        results += search_configs(records, macs, "samethres", lambdas, normalize=args.normalize,
                                  calibration=args.calibration, progress=args.progress,
                                  exit_type=exit_type)
    return results


# --------------------------------------------------------------------------- evaluate


def run_evaluate(args: argparse.Namespace) -> int:
    import polars as pl

    from dyce.macs_info import load_macs_info
    from dyce.results import (
        SEARCH_SCHEMA,
        check_exit_table,
        evaluate_table,
        read_tables,
        write_table,
    )
    from dyce.selection import choice_table, promise_columns, read_choice

    choices = {path: read_choice(path) for path in args.results if str(path).endswith(".json")}
    tables = [(choice_table(choices[path]), {"choice": str(path)}) if path in choices
              else read_tables([path], required=tuple(SEARCH_SCHEMA))[0] for path in args.results]
    macs = load_macs_info(args.macs_info)
    records = load_records_for(args.records, macs)
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
                    search_tables=[str(p) for p in args.results])
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

    from dyce.results import (
        pareto_front,
        read_tables,
        summary_figures,
        write_csv,
        write_table,
    )

    if not (math.isfinite(args.tolerance) and 0 <= args.tolerance < 1):
        raise DyceError(f"{args.tolerance} is not in [0, 1)", field="tolerance")
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
    if args.csv:
        write_csv(front, args.csv)
    write_table(front, args.out, metadata)
    summary = summary_figures(front, args.tolerance, by=by)
    for row in summary.iter_rows(named=True):
        label = " ".join(str(row[c]) for c in by) or "all"
        saved = row["macs_saved"]
        figure = "no configuration" if saved is None else f"{100 * saved:.1f} % MACs saved"
        print(f"dyce front: {label}: {figure} at ≤ {100 * args.tolerance:g} % accuracy drop")
    return 0
