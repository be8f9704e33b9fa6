"""``dyce merge-search``: one search table from the tables of several parts of a λ grid."""

from __future__ import annotations

import argparse

from dyce.errors import DyceError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``merge-search``."""
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


def run_merge_search(args: argparse.Namespace) -> int:
    import polars as pl

    from dyce.results import SEARCH_SCHEMA, read_tables, write_table

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
