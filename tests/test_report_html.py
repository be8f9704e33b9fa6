"""Summary tables as HTML pages (what Snakemake's report shows inline)."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from dyce.report.html import format_cell, html_table, write_html_table

DYCE = str(Path(sys.executable).parent / "dyce")


def cells(page: str) -> list[list[str]]:
    """The body rows of the page's table, cell texts unescaped."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [[html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_every_row_and_column_is_shown_with_readable_numbers():
    table = pl.DataFrame({
        "model": ["resnet", "resnet"], "method": ["onepass", "msdnet"],
        "macs_saved": [0.262, None], "relative_acc": [0.99512345, None],
        "config": ['[["mlp1x1000", 0.9], -1]', None],
    })
    page = html_table(table, caption="MACs saved at ≤ 0.5 % <drop>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<caption>MACs saved at ≤ 0.5 % &lt;drop&gt;</caption>" in page
    assert re.findall(r"<th>(.*?)</th>", page) == table.columns
    assert cells(page) == [
        ["resnet", "onepass", "26.20 %", "0.9951", '[["mlp1x1000", 0.9], -1]'],
        ["resnet", "msdnet", "—", "—", "—"],
    ]


@given(st.lists(st.text(max_size=20), min_size=1, max_size=5))
def test_any_text_comes_back_unchanged_and_never_as_markup(texts):
    page = html_table(pl.DataFrame({"config": texts}))
    assert [row[0] for row in cells(page)] == texts
    assert page.count("<tr>") == len(texts) + 1  # header + rows: no injected rows


def test_format_cell():
    assert format_cell("tolerance", 0.005) == "0.50 %"
    assert format_cell("relative_macs", 0.5) == "0.5000"
    assert format_cell("relative_macs", float("nan")) == "—"
    assert format_cell("front_size", 7) == "7"


def test_write_is_atomic_and_complete(tmp_path):
    path = tmp_path / "sub" / "summary.html"
    write_html_table(pl.DataFrame({"a": [1]}), path)
    assert path.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert [p.name for p in path.parent.iterdir()] == ["summary.html"]


def test_summary_command_writes_the_csv_table_as_html(tmp_path):
    front = pl.DataFrame({
        "model": ["m", "m"], "dataset": ["d", "d"], "method": ["onepass", "onepass"],
        "parameter_name": ["lambda", "lambda"], "parameter": [0.9, 1.0],
        "config": ["[-1]", "[-1]"],
        "relative_macs": [0.6, 1.0], "relative_acc": [0.999, 1.0],
    })
    front.write_parquet(tmp_path / "front.parquet")
    result = subprocess.run(
        [DYCE, "summary", str(tmp_path / "front.parquet"), "--tolerance", "0.01",
         "--out", str(tmp_path / "s.csv"), "--html", str(tmp_path / "s.html"),
         "--caption", "all models"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    csv = pl.read_csv(tmp_path / "s.csv")
    page = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert re.findall(r"<th>(.*?)</th>", page) == csv.columns
    assert [row[:3] for row in cells(page)] == [["m", "d", "onepass"]]
    saved = cells(page)[0][csv.columns.index("macs_saved")]
    assert saved == f"{csv['macs_saved'][0] * 100:.2f} %" == "40.00 %"


def test_workflow_passes_the_configured_tolerance_to_plot_and_summaries(tmp_path):
    """``summary.tolerance`` reaches the plot's reference line and both summary tables, and
    the summaries write their HTML twins (what the report shows)."""
    import yaml

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config" / "test" / "tiny.yaml").read_text())
    config["summary"]["tolerance"] = 0.0125
    path = tmp_path / "tolerance.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--dry-run", "--printshellcmds",
         "--cores", "1", "--configfile", str(path)],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [line.removeprefix("Shell command: ")
                for line in (result.stdout + result.stderr).splitlines()
                if line.removeprefix("Shell command: ").startswith(("dyce plot", "dyce summary"))]
    assert len(commands) == 2 * len(config["models"]) + 1, commands
    for command in commands:
        assert " --tolerance 0.0125 " in command, command
        if command.startswith("dyce summary"):
            assert re.search(r" --html \S+summary\.html ", command), command
