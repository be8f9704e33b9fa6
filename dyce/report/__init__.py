"""Stage 7, report: result tables, Pareto fronts, summary figures and plots.

- :mod:`dyce.report.tables`: search/validation tables (polars), Pareto filter, single-exit
  points, savings at a tolerance.
- :mod:`dyce.report.html`: a table as a self-contained HTML page (for Snakemake's report).
- :mod:`dyce.report.plots`: Pareto plots (matplotlib, Agg) and the summary table; imported
  by its own name, not re-exported here, so that the jobs writing tables (search, evaluate,
  front) neither load matplotlib nor rerun when the plots change.
"""

from dyce.report.html import html_table, write_html_table
from dyce.report.tables import (
    config_to_json,
    evaluate_table,
    pareto_front,
    parse_config,
    read_table,
    read_tables,
    savings_at_tolerance,
    search_table,
    single_exit_points,
    summary_figures,
    write_csv,
    write_table,
)

__all__ = [
    "config_to_json",
    "evaluate_table",
    "html_table",
    "pareto_front",
    "parse_config",
    "read_table",
    "read_tables",
    "savings_at_tolerance",
    "search_table",
    "single_exit_points",
    "summary_figures",
    "write_csv",
    "write_html_table",
    "write_table",
]
