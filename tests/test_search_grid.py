"""One search job per (model, method) over a whole λ grid: λ is a row key of its table, and a grid
cut into chunks (``dyce merge-search``) gives the table of one search of the whole grid."""

from __future__ import annotations

import io

import polars as pl
import pytest

from dyce.cli import main
from dyce.io import write_json
from dyce.records import write_records
from dyce.report.tables import read_table
from tests.synthetic import make_synthetic_macs, make_synthetic_records

GRID = ["0.5", "0.7", "0.8", "0.9", "1.0"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Search records and the matching macs_info."""
    folder = tmp_path_factory.mktemp("grid")
    records = make_synthetic_records(400, 4, 3, 10, seed=3, model="net", dataset="toy",
                                     split="search")
    write_records(folder / "search.parquet", records)
    write_json(folder / "macs.json", make_synthetic_macs(4, 3))
    return folder


def search(inputs, method: str, lambdas: list[str], out) -> pl.DataFrame:
    assert main(["search", str(inputs / "search.parquet"), "--macs-info",
                 str(inputs / "macs.json"), "--method", method, "--lambda", *lambdas,
                 "--no-progress", "--out", str(out)]) == 0
    return read_table(out)[0]


def row_bytes(table: pl.DataFrame) -> dict[float, bytes]:
    """Each λ's rows, serialised (so equal means byte-identical values)."""
    rows = {}
    for (lam,), part in table.group_by("lambda", maintain_order=True):
        buffer = io.BytesIO()
        part.write_ipc(buffer)
        rows[lam] = buffer.getvalue()
    return rows


@pytest.mark.parametrize("method", ["onepass", "circular", "samethres"])
def test_one_more_lambda_adds_its_rows_and_leaves_the_others_identical(inputs, tmp_path,
                                                                        method):
    before = search(inputs, method, [lam for lam in GRID if lam != "0.8"], tmp_path / "a.parquet")
    after = search(inputs, method, GRID, tmp_path / "b.parquet")
    old, new = row_bytes(before), row_bytes(after)
    assert set(new) - set(old) == {0.8}
    assert {lam: new[lam] for lam in old} == old
    assert after["lambda"].to_list() == sorted(after["lambda"].to_list())


def test_chunks_merged_equal_one_search_of_the_whole_grid(inputs, tmp_path, capsys):
    whole = search(inputs, "circular", GRID, tmp_path / "whole.parquet")
    first = tmp_path / "chunk_0.parquet"
    second = tmp_path / "chunk_1.parquet"
    search(inputs, "circular", GRID[:3], first)
    search(inputs, "circular", GRID[3:], second)
    merged = tmp_path / "merged.parquet"
    assert main(["merge-search", str(first), str(second), "--out", str(merged)]) == 0
    table, metadata = read_table(merged)
    assert table.equals(whole)
    assert metadata == read_table(tmp_path / "whole.parquet")[1]


def test_merge_refuses_overlapping_or_foreign_chunks(inputs, tmp_path, capsys):
    first = tmp_path / "chunk_0.parquet"
    search(inputs, "onepass", GRID[:3], first)
    overlap = tmp_path / "overlap.parquet"
    search(inputs, "onepass", GRID[2:], overlap)
    other = tmp_path / "other.parquet"
    search(inputs, "circular", GRID[3:], other)
    out = tmp_path / "merged.parquet"
    capsys.readouterr()
    assert main(["merge-search", str(first), str(overlap), "--out", str(out)]) == 2
    assert "field 'lambda'" in capsys.readouterr().err
    assert main(["merge-search", str(first), str(other), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert str(other) in error and "field 'method'" in error
    assert not out.exists()
