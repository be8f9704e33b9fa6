"""``dyce search``: exit configurations per λ (DyCE) or per parameter (peer strategies);
``dyce merge-search``: one table from the searches of the parts of a λ grid."""

from __future__ import annotations

import argparse
import sys
import warnings

from dyce.cli.options import add_macs_info, add_no_progress, warn_if_chance_level
from dyce.errors import DyceError

DYCE_METHODS = ("onepass", "circular", "samethres")
PEER_METHODS = ("global_threshold", "msdnet", "patience")
METHODS = DYCE_METHODS + PEER_METHODS

#: Default λ sweep of the DyCE methods: 0.50, 0.51, …, 1.00 (START, STOP, STEP; STOP included).
DEFAULT_LAMBDA_RANGE = (0.5, 1.0, 0.01)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``search`` and ``merge-search``."""
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
                        help="λ grid START, START+STEP, … up to STOP (STOP included when the grid "
                        "reaches it; exact decimal steps; at most 10000 values; DyCE methods)")
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
    search.add_argument("--candidates", choices=("dense", "searched"), default="dense",
                        help="onepass/circular: also write each searched configuration's "
                        "neighbours (thresholds raised toward 1, one shared threshold on its "
                        "exits; a 'candidate' column names each row; default), or only the "
                        "searched configurations, as the original DyCE ('searched')")
    search.add_argument("--model", help="model name for the table (default: from the records)")
    search.add_argument("--dataset", help="dataset name for the table (default: from the records)")
    add_no_progress(search)
    search.add_argument("--out", required=True, metavar="RESULT.parquet")
    search.set_defaults(func=run_search)

    parser = subparsers.add_parser(
        "merge-search",
        help="concatenate search tables of disjoint λ chunks into one table",
        description="Concatenate the search tables of one model and method, each searched on "
        "its own part of the λ grid (dyce search --lambda …), in the order given. The tables "
        "must come from the same search (same model, dataset, method and search metadata) and "
        "share no λ; the result is the table one search of the whole grid writes.",
    )
    parser.add_argument("tables", nargs="+", metavar="CHUNK.parquet")
    parser.add_argument("--out", required=True, metavar="RESULT.parquet")
    parser.set_defaults(func=run_merge_search)



# --------------------------------------------------------------------------- search


def lambda_grid(lambdas: list[float] | None, lambda_range: list[float] | None) -> list[float]:
    """The λ values to search: ``--lambda`` values, then ``--lambda-range``, else the default.

    The range includes STOP when the grid reaches it (as the workflow's ``lambdas``), values are
    exact decimals (:func:`dyce.search.lambda_grid.lambda_range`). Raises :class:`DyceError`
    (field ``lambda`` or ``lambda-range``) for a negative or non-finite λ, a bad range or more
    than :data:`~dyce.search.lambda_grid.MAX_LAMBDAS` values.
    """
    from dyce.search.lambda_grid import MAX_LAMBDAS, lambda_values
    from dyce.search.lambda_grid import lambda_range as grid

    values = lambda_values(lambdas or [], field="lambda")
    if lambda_range is not None:
        values += grid(*lambda_range, field="lambda-range")
    if not values:
        values = grid(*DEFAULT_LAMBDA_RANGE)
    if len(values) > MAX_LAMBDAS:
        raise DyceError(f"{len(values)} λ values, more than the maximum {MAX_LAMBDAS}",
                        field="lambda")
    return values


def exit_type_indices(values: list[str] | None, names: tuple[str, ...], path: str) -> list[int] | None:
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
    from dyce.records.npz import load_any_records

    return load_any_records(path, macs)


def run_search(args: argparse.Namespace) -> int:
    from dyce.macs.info import load_macs_info
    from dyce.report.tables import search_metadata, search_table, write_table

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
    warned = warn_if_chance_level("search", records)
    exit_types = exit_type_indices(args.exit_types, records.exit_types, args.macs_info)

    if peer:
        from dyce.evaluate.strategies import run_strategy

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
    options = {"candidates": args.candidates} if "candidate" in table.columns else {}
    metadata = search_metadata(records, method=args.method, normalize=args.normalize,
                               calibration=args.calibration, macs_info=str(args.macs_info),
                               warnings=warned, **options)
    write_table(table, args.out, metadata)
    print(f"dyce search: {table.height} configurations → {args.out}")
    return 0


def _search_dyce(args, records, macs, lambdas, exit_types) -> list:
    with warnings.catch_warnings():
        # run_search has printed the λ > 1 warning as one line already.
        warnings.filterwarnings("ignore", message="lambda above 1", category=UserWarning)
        return _search_dyce_quiet(args, records, macs, lambdas, exit_types)


def _search_dyce_quiet(args, records, macs, lambdas, exit_types) -> list:
    from dyce.search.candidates import search_candidates
    from dyce.search.methods import search_configs

    if args.method != "samethres":
        if exit_types:
            raise DyceError(f"{args.method} chooses exit types itself; --exit-type is for "
                            "samethres and the peer strategies", field="exit_type")
        return search_candidates(records, macs, args.method, lambdas,
                                 candidates=args.candidates, normalize=args.normalize,
                                 calibration=args.calibration, progress=args.progress)
    results = []
    for exit_type in exit_types or [0]:
        results += search_configs(records, macs, "samethres", lambdas, normalize=args.normalize,
                                  calibration=args.calibration, progress=args.progress,
                                  exit_type=exit_type)
    return results


# --------------------------------------------------------------------------- merge-search


def run_merge_search(args: argparse.Namespace) -> int:
    import polars as pl

    from dyce.report.tables import SEARCH_SCHEMA, read_tables, write_table

    tables = read_tables(args.tables, required=tuple(SEARCH_SCHEMA))
    first_df, first_metadata = tables[0]
    for path, (df, metadata) in zip(args.tables, tables, strict=True):
        if metadata != first_metadata:
            field = next(key for key in sorted({*metadata, *first_metadata})
                         if metadata.get(key) != first_metadata.get(key))
            raise DyceError(f"differs from {args.tables[0]}: not a part of the same search",
                            path=path, field=field)
        for column in ("model", "dataset", "method"):
            if set(df[column].unique()) - set(first_df[column].unique()):
                raise DyceError(f"differs from {args.tables[0]}: not a part of the same search",
                                path=path, field=column)
    table = pl.concat([df for df, _ in tables], how="vertical")
    keys = [column for column in ("lambda", "exit_type", "candidate") if column in table.columns]
    if table.select(pl.struct(keys).is_duplicated().any()).item():
        raise DyceError("the tables share a λ: chunks of one grid must be disjoint",
                        path=args.tables[0], field="lambda")
    write_table(table, args.out, first_metadata)
    print(f"dyce merge-search: {table.height} configurations from {len(tables)} tables "
          f"→ {args.out}")
    return 0
