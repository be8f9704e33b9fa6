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
    parser.add_argument("--order", choices=("risk", "macs"), default="risk",
                        help="testing order, from the search split only: each configuration's "
                        "loss on the search records, lowest first, each cheaper than the ones before "
                        "(default), or its relative "
                        "MACs there, most expensive first")
    parser.add_argument("--loss", choices=("auto", "breaks", "net"), default="auto",
                        help="what the test bounds: 'breaks', the final head's right answers the "
                        "configuration gets wrong (tight when exits rarely fix the final head's "
                        "mistakes); 'net', breaks minus fixes (three bounds at delta/4, delta/4, "
                        "delta/2; better when they often do); 'auto' (default), the smaller of "
                        "the two, each at delta/2")
    parser.add_argument("--search-records", metavar="SEARCH",
                        help="the records the tables were searched on (for --order risk; "
                        "default: the path the tables' metadata names)")
    parser.add_argument("--out", required=True, metavar="CHOICE.json")
    parser.set_defaults(func=run_select)


def run_select(args: argparse.Namespace) -> int:
    from dyce.io import write_json
    from dyce.macs.info import load_macs_info
    from dyce.records.format import check_same_exit_table
    from dyce.records.npz import load_any_records
    from dyce.report.tables import SEARCH_SCHEMA, read_tables
    from dyce.runtime.selection import (
        candidates_by_method,
        check_level,
        choice_document,
        select_operating_point,
        with_search_losses,
    )

    tolerance = check_level(args.tolerance, "tolerance")
    delta = check_level(args.delta, "delta")
    tables = read_tables(args.tables, required=tuple(SEARCH_SCHEMA))
    macs = load_macs_info(args.macs_info)
    records = load_any_records(args.records, macs)
    named = [(str(path), df, meta) for path, (df, meta) in zip(args.tables, tables, strict=True)]
    groups = candidates_by_method(named, records)
    if args.order == "risk":
        search = load_any_records(search_records_path(args.search_records, named), macs)
        check_same_exit_table(search, records)
        groups = {method: with_search_losses(candidates, search, macs, args.loss)
                  for method, candidates in groups.items()}
    selections = {
        method: select_operating_point(candidates, records, macs, tolerance=tolerance,
                                       delta=delta, bound=args.bound, order=args.order,
                                       loss=args.loss)
        for method, candidates in groups.items()
    }
    document = choice_document(selections, records=str(args.records),
                               tables=[str(p) for p in args.tables],
                               macs_info=str(args.macs_info), split=records.split,
                               model=records.model, dataset=records.dataset)
    for method, candidates in groups.items():  # names as in the tables (e.g. the config's key)
        document[method].update(model=candidates[0].row.get("model") or records.model,
                                dataset=candidates[0].row.get("dataset") or records.dataset)
    write_json(args.out, document)
    for method, selection in selections.items():
        print(f"dyce select: {selection.summary(method)}")
    print(f"dyce select: {len(selections)} methods → {args.out}")
    return 0


def search_records_path(given: str | None, tables: list[tuple[str, object, dict]]) -> str:
    """``--search-records``, else the one search-records path all tables' metadata name."""
    from pathlib import Path

    from dyce.errors import DyceError

    if given is not None:
        return given
    named = {meta.get("search_records") for _, _, meta in tables}
    if len(named) != 1 or None in named or not Path(str(next(iter(named)))).is_file():
        raise DyceError("--order risk needs the search records: give --search-records (or use "
                        "--order macs)", path=tables[0][0], field="search_records")
    return str(next(iter(named)))
