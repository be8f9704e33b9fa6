"""``dyce plot`` and ``dyce summary`` on fronts from real search → evaluate → front runs."""

from __future__ import annotations

import math

import polars as pl
import pytest

from dyce.cli import main
from dyce.io import write_json
from dyce.records.format import write_records
from dyce.report.plots import pareto_figure, summary_table
from dyce.report.tables import read_table, single_exit_points
from tests.synthetic import make_synthetic_macs, make_synthetic_records

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    """Fronts of onepass and global_threshold for a synthetic 5-position, 2-type model."""
    root = tmp_path_factory.mktemp("fronts")
    search = make_synthetic_records(400, 5, 2, 10, seed=3, model="net", dataset="toy",
                                    split="search")
    val = make_synthetic_records(300, 5, 2, 10, seed=4, model="net", dataset="toy", split="val")
    write_records(root / "search.parquet", search)
    write_records(root / "val.parquet", val)
    write_json(root / "macs.json", make_synthetic_macs(5, 2))
    paths = []
    for method, extra in (("onepass", ["--lambda-range", "0.5", "1.0", "0.05"]),
                          ("global_threshold", [])):
        common = ["--macs-info", str(root / "macs.json")]
        assert main(["search", str(root / "search.parquet"), *common, "--method", method, *extra,
                     "--no-progress", "--out", str(root / f"s_{method}.parquet")]) == 0
        assert main(["evaluate", str(root / f"s_{method}.parquet"), "--records",
                     str(root / "val.parquet"), *common, "--out",
                     str(root / f"e_{method}.parquet")]) == 0
        assert main(["front", str(root / f"e_{method}.parquet"), "--out",
                     str(root / f"f_{method}.parquet")]) == 0
        paths.append(root / f"f_{method}.parquet")
    return {"root": root, "fronts": paths, "val": val, "macs": root / "macs.json"}


def test_summary_reports_macs_saved_by_cheapest_config_within_tolerance(fronts, tmp_path):
    out = tmp_path / "summary.csv"
    assert main(["summary", *map(str, fronts["fronts"]), "--tolerance", "0.005",
                 "--out", str(out)]) == 0
    table = pl.read_csv(out)
    assert table["method"].to_list() == ["onepass", "global_threshold"]  # DyCE methods first
    for path in fronts["fronts"]:
        front, _ = read_table(path)
        method = front["method"][0]
        ok = front.filter(pl.col("relative_acc") >= 0.995)
        row = table.filter(pl.col("method") == method)
        expected = 1.0 - ok["relative_macs"].min() if ok.height else None
        if expected is None:
            assert row["macs_saved"][0] is None
        else:
            assert row["macs_saved"][0] == pytest.approx(expected, abs=1e-12)
            assert row["relative_acc"][0] >= 0.995
        assert row["front_size"][0] == front.height
        assert row["model"][0] == "net" and row["dataset"][0] == "toy"


def test_looser_tolerance_never_saves_less(fronts):
    tables = [read_table(path)[0] for path in fronts["fronts"]]
    strict = summary_table(tables, 0.0)["macs_saved"].fill_null(-math.inf).to_list()
    loose = summary_table(tables, 0.05)["macs_saved"].fill_null(-math.inf).to_list()
    assert all(b >= a for a, b in zip(strict, loose, strict=True))


def test_plot_is_a_png_with_fronts_single_exits_and_original_model(fronts, tmp_path):
    out = tmp_path / "plots" / "pareto.png"
    assert main(["plot", *map(str, fronts["fronts"]), "--records",
                 str(fronts["root"] / "val.parquet"), "--macs-info", str(fronts["macs"]),
                 "--title", "net on toy", "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert not [p for p in out.parent.iterdir() if p.name != "pareto.png"]  # no temp files


def test_figure_draws_every_method_every_single_exit_and_the_reference(fronts):
    tables = [read_table(path)[0] for path in fronts["fronts"]]
    exits = single_exit_points(fronts["val"], make_synthetic_macs(5, 2))
    fig = pareto_figure(tables, exits, title="t")
    try:
        labels = fig.axes[1].get_legend_handles_labels()[1]
        assert any(label.startswith("onepass (") for label in labels)
        assert any(label.startswith("global_threshold (") for label in labels)
        assert "original model" in labels
        assert {label for label in labels if label.startswith("single exit")} == {
            f"single exit {name}" for name in fronts["val"].exit_types
        }
        # Every single exit (4 candidate positions x 2 types) is drawn on the full panel.
        drawn = sum(
            len(collection.get_offsets()) for collection in fig.axes[0].collections
            if collection.get_label().startswith("single exit")
        )
        assert drawn == 8
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_bad_front_fails_with_one_line_and_writes_nothing(fronts, tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"method": ["x"], "relative_macs": [0.5]}).write_parquet(bad)
    out = tmp_path / "summary.csv"
    assert main(["summary", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "relative_acc" in err and str(bad) in err
    assert not out.exists()
    png = tmp_path / "p.png"
    assert main(["plot", str(bad), "--records", str(fronts["root"] / "val.parquet"),
                 "--macs-info", str(fronts["macs"]), "--out", str(png)]) == 2
    assert not png.exists()
