"""HTML tables for the workflow's report: a summary table as a small self-contained page.

Snakemake's report shows an HTML result inside the page (a CSV only as a download), so each
summary CSV gets an HTML twin rendered from the same table.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import polars as pl

from dyce.io import atomic_path

#: Columns shown as percentages (fractions in the table).
PERCENT_COLUMNS = frozenset({"macs_saved", "tolerance"})

_STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; }
caption { text-align: left; margin-bottom: 0.5em; font-weight: bold; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
td.text { font-family: monospace; font-size: 12px; max-width: 40em; overflow-wrap: anywhere; }
"""


def format_cell(column: str, value: object) -> str:
    """A table value as text: fractions of ``PERCENT_COLUMNS`` in %, other floats to 4 digits,
    missing values as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value * 100:.2f} %" if column in PERCENT_COLUMNS else f"{value:.4f}"
    return str(value)


def html_table(table: pl.DataFrame, caption: str = "") -> str:
    """A self-contained HTML page with ``table`` as one ``<table>`` (every column, every row,
    values escaped; numbers right-aligned)."""
    numeric = {name for name, dtype in table.schema.items() if dtype.is_numeric()}
    head = "".join(f"<th>{html.escape(name)}</th>" for name in table.columns)
    rows = []
    for row in table.iter_rows(named=True):
        cells = "".join(
            f'<td class="{"number" if name in numeric else "text"}">'
            f"{html.escape(format_cell(name, value))}</td>"
            for name, value in row.items()
        )
        rows.append(f"<tr>{cells}</tr>")
    title = html.escape(caption)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{title}</title><style>{_STYLE}</style></head><body>\n"
        f"<table>\n<caption>{title}</caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>\n</body></html>\n"
    )


def write_html_table(table: pl.DataFrame, path: str | Path, caption: str = "") -> None:
    """Write :func:`html_table` to ``path`` (temporary file, then renamed)."""
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(html_table(table, caption), encoding="utf-8")
