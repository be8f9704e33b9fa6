"""Pareto plots and summary tables of searched exit configurations (matplotlib, Agg backend).

A plot shows, on validation figures, relative MACs (x: mean MACs per sample / MACs of the
original model) against relative accuracy (y: accuracy / accuracy of the final head alone): the
Pareto front of every method as a step line, every single exit (all samples leave there) as a
point, and the original model at (1, 1). A second panel zooms onto the region within a few
tolerances of the original accuracy, where the fronts differ.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import polars as pl

from dyce.errors import DyceError
from dyce.io import atomic_path

#: Methods in plot and table order (DyCE methods first); unknown names follow alphabetically.
METHOD_ORDER = ("onepass", "circular", "samethres", "global_threshold", "msdnet", "patience")
_STYLE = {
    "onepass": ("tab:blue", "o", "-"),
    "circular": ("tab:red", "s", "-"),
    "samethres": ("tab:green", "^", "--"),
    "global_threshold": ("tab:purple", "v", ":"),
    "msdnet": ("tab:orange", "D", ":"),
    "patience": ("tab:brown", "P", ":"),
}
FRONT_COLUMNS = ("method", "relative_macs", "relative_acc")


def method_rank(method: str) -> tuple[int, str]:
    """Sort key that puts the DyCE methods first, then the peer strategies."""
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def combine_fronts(fronts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Stack front tables of several methods (columns may differ; missing ones become null)."""
    if not fronts:
        raise DyceError("no front table given", field="fronts")
    for front in fronts:
        missing = [name for name in FRONT_COLUMNS if name not in front.columns]
        if missing:
            raise DyceError(f"front table lacks columns {missing}", field=missing[0])
    return pl.concat(list(fronts), how="diagonal_relaxed")


def summary_table(fronts: Sequence[pl.DataFrame], tolerance: float = 0.005) -> pl.DataFrame:
    """Per model, dataset and method: MACs saved at ≤ ``tolerance`` relative accuracy drop.

    Uses :func:`dyce.report.tables.summary_figures` on the validation figures of the fronts. Columns:
    ``model``, ``dataset``, ``method``, ``tolerance``, ``macs_saved`` (``1 − relative_macs`` of
    the cheapest configuration with ``relative_acc ≥ 1 − tolerance``; null when none qualifies),
    that configuration's ``relative_macs``, ``relative_acc``, ``parameter_name``, ``parameter``,
    ``config``, ``front_size`` (configurations on the method's front) and ``warning`` (e.g. the
    original model near chance level; null when none, from the fronts' ``warning``
    column). Rows are ordered by model, dataset, then method (DyCE methods first).
    """
    from dyce.report.tables import check_tolerance, summary_figures

    check_tolerance(tolerance)
    combined = combine_fronts(fronts)
    for name in ("model", "dataset"):
        if name not in combined.columns:
            combined = combined.with_columns(pl.lit("").alias(name))
    by = ("model", "dataset", "method")
    if "warning" not in combined.columns:
        combined = combined.with_columns(pl.lit(None, dtype=pl.String).alias("warning"))
    sizes = combined.group_by(list(by)).agg(
        pl.len().alias("front_size"),
        pl.col("warning").drop_nulls().unique(maintain_order=True).str.join("; ")
        .replace("", None).alias("warning"),
    )
    table = summary_figures(combined, tolerance, by=by).join(sizes, on=list(by), how="left")
    order = sorted(
        range(table.height),
        key=lambda row: (
            table["model"][row], table["dataset"][row], method_rank(table["method"][row]),
        ),
    )
    return table[order]


def _front_steps(macs: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Staircase of a front: accuracy holds until the next, more expensive configuration."""
    order = np.argsort(macs, kind="stable")
    return macs[order], acc[order]


def pareto_figure(
    fronts: Sequence[pl.DataFrame],
    single_exits: pl.DataFrame | None = None,
    *,
    title: str | None = None,
    tolerance: float = 0.005,
):
    """A matplotlib figure: every method's front, single exits, the original model at (1, 1).

    ``fronts``: tables with ``method``, ``relative_macs``, ``relative_acc`` (validation).
    ``single_exits``: :func:`dyce.report.tables.single_exit_points` (``exit_type_name`` "final" is
    the original model and is drawn as the reference star).
    """
    import matplotlib

    from dyce.report.tables import check_tolerance

    check_tolerance(tolerance)
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    combined = combine_fronts(fronts)
    methods = sorted(set(combined["method"].to_list()), key=method_rank)
    fig, (ax_all, ax_zoom) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    accuracies = [combined["relative_acc"].to_numpy()]
    for ax in (ax_all, ax_zoom):
        for method in methods:
            rows = combined.filter(pl.col("method") == method)
            macs, acc = _front_steps(
                rows["relative_macs"].to_numpy().astype(float),
                rows["relative_acc"].to_numpy().astype(float),
            )
            color, marker, line = _STYLE.get(method, (None, "x", "-"))
            ax.step(macs, acc, where="post", color=color, linestyle=line, linewidth=1.4,
                    marker=marker, markersize=4, label=f"{method} ({len(macs)})")
        if single_exits is not None and single_exits.height:
            exits = single_exits.filter(pl.col("exit_type_name") != "final")
            for name in sorted(set(exits["exit_type_name"].to_list())):
                points = exits.filter(pl.col("exit_type_name") == name)
                ax.scatter(points["relative_macs"], points["relative_acc"], s=22, alpha=0.7,
                           edgecolors="black", linewidths=0.4, label=f"single exit {name}")
        ax.scatter([1.0], [1.0], marker="*", s=220, color="gold", edgecolors="black",
                   zorder=5, label="original model")
        ax.axhline(1.0 - tolerance, color="grey", linestyle="--", linewidth=0.8,
                   label=f"{tolerance:.1%} accuracy drop")
        ax.set_xlabel("relative MACs (mean per sample / original model)")
        ax.set_ylabel("relative accuracy (validation / original model)")
        ax.grid(True, alpha=0.3)
    if single_exits is not None and single_exits.height:
        accuracies.append(single_exits["relative_acc"].to_numpy())
    every_acc = np.concatenate(accuracies)
    lowest, highest = float(np.nanmin(every_acc)), float(np.nanmax(every_acc))
    ax_all.set_ylim(min(lowest, 1.0 - 2 * tolerance) - 0.02, max(1.02, highest + 0.01))
    ax_all.set_title("all configurations and single exits")
    zoom_floor = 1.0 - max(6 * tolerance, 0.02)
    ax_zoom.set_ylim(zoom_floor, max(1.0 + max(2 * tolerance, 0.01), highest + 0.003))
    ax_zoom.set_title(f"zoom: relative accuracy ≥ {zoom_floor:.3f}")
    in_zoom = combined.filter(pl.col("relative_acc") >= zoom_floor)["relative_macs"]
    left = float(in_zoom.min()) if in_zoom.len() else 0.0
    ax_zoom.set_xlim(max(0.0, left - 0.05), 1.05)
    ax_zoom.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_format(path: str | os.PathLike) -> str:
    """The image format named by ``path``'s suffix (``png`` without one); :class:`DyceError`
    for a suffix matplotlib cannot write, before anything is drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    image_format = os.path.splitext(str(path))[1].lstrip(".").lower() or "png"
    known = FigureCanvasAgg.get_supported_filetypes()
    if image_format not in known:
        raise DyceError(f"cannot write a .{image_format} image; use one of "
                        f"{', '.join(sorted(known))}", path=path, field="out")
    return image_format


def save_pareto_plot(
    path: str | os.PathLike,
    fronts: Sequence[pl.DataFrame],
    single_exits: pl.DataFrame | None = None,
    *,
    title: str | None = None,
    tolerance: float = 0.005,
    dpi: int = 120,
) -> None:
    """Draw :func:`pareto_figure` and write it to ``path`` atomically (format from the suffix)."""
    import matplotlib.pyplot as plt

    image_format = plot_format(path)
    fig = pareto_figure(fronts, single_exits, title=title, tolerance=tolerance)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=image_format)
    finally:
        plt.close(fig)
