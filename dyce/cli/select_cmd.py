"""``dyce select``: per method, the operating point chosen on the calibration split."""

from __future__ import annotations

import argparse

from dyce.cli.options import add_macs_info


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``select``."""
    parser = subparsers.add_parser(
        "select",
        help="choose each method's operating point on calibration records, with a guarantee",
        description="For each method in the search tables, choose the cheapest configuration "
        "whose relative accuracy drop vs the original model is at most --tolerance with "
        "probability at least 1 - --delta (Learn-then-Test fixed-sequence testing on the "
        "calibration records, which must be used for nothing else). Writes CHOICE.json, an "
        "object keyed by method; 'dyce evaluate CHOICE.json --records VAL …' shows whether "
        "the promise held.",
    )
    parser.add_argument("tables", nargs="+", metavar="SEARCH.parquet",
                        help="tables written by dyce search (any methods, peers included)")
    parser.add_argument("--records", required=True, metavar="CALIB",
                        help="calibration records (.parquet or .npz)")
    add_macs_info(parser)
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="largest relative accuracy drop (default 0.005)")
    parser.add_argument("--delta", type=float, default=0.1,
                        help="probability that the promise may fail (default 0.1)")
    parser.add_argument("--bound", choices=("clopper-pearson", "hoeffding-bentkus"),
                        default="clopper-pearson", help="upper confidence bound (default "
                        "clopper-pearson)")
    parser.add_argument("--order", choices=("accuracy", "macs"), default="accuracy",
                        help="testing order from the search split's figures: relative accuracy, "
                        "highest first (default), or relative MACs, most expensive first")
    parser.add_argument("--out", required=True, metavar="CHOICE.json")
    parser.set_defaults(func=run_select)


def run_select(args: argparse.Namespace) -> int:
    from dyce.io import write_json
    from dyce.macs_info import load_macs_info
    from dyce.npz import load_any_records
    from dyce.results import SEARCH_SCHEMA, read_tables
    from dyce.selection import (
        candidates_by_method,
        check_level,
        choice_document,
        select_operating_point,
    )

    tolerance = check_level(args.tolerance, "tolerance")
    delta = check_level(args.delta, "delta")
    tables = read_tables(args.tables, required=tuple(SEARCH_SCHEMA))
    macs = load_macs_info(args.macs_info)
    records = load_any_records(args.records, macs)
    groups = candidates_by_method(
        [(str(path), df, meta) for path, (df, meta) in zip(args.tables, tables, strict=True)],
        records)
    selections = {
        method: select_operating_point(candidates, records, macs, tolerance=tolerance,
                                       delta=delta, bound=args.bound, order=args.order)
        for method, candidates in groups.items()
    }
    document = choice_document(selections, records=str(args.records),
                               tables=[str(p) for p in args.tables],
                               macs_info=str(args.macs_info), split=records.split,
                               model=records.model, dataset=records.dataset)
    write_json(args.out, document)
    for method, selection in selections.items():
        print(f"dyce select: {selection.summary(method)}")
    print(f"dyce select: {len(selections)} methods → {args.out}")
    return 0
