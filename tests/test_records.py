"""Parquet records: round trips, streaming writes, atomicity and validation of bad files."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyce.errors import DyceError
from dyce.macs.info import load_macs_info
from dyce.records.format import (
    METADATA_KEY,
    ExitRecords,
    RecordWriter,
    check_compatible,
    check_same_exit_table,
    read_records,
    read_records_metadata,
    records_metadata,
    scan_records,
    write_records,
)
from tests.synthetic import make_synthetic_macs, make_synthetic_records


def assert_same_records(left: ExitRecords, right: ExitRecords) -> None:
    np.testing.assert_array_equal(left.labels, right.labels)
    np.testing.assert_array_equal(left.preds, right.preds)
    np.testing.assert_array_equal(left.confs, right.confs)
    np.testing.assert_array_equal(left.sample_ids, right.sample_ids)
    for name in ("exit_types", "num_positions", "num_classes", "position_names", "model",
                 "dataset", "split", "extra"):
        assert getattr(left, name) == getattr(right, name), name


@settings(max_examples=25, deadline=None)
@given(
    num_samples=st.integers(1, 40),
    num_positions=st.integers(1, 4),
    num_exit_types=st.integers(1, 3),
    num_classes=st.sampled_from([2, 10, 128, 129, 1000, 40000]),
    topk=st.integers(1, 3),
    row_group_size=st.integers(1, 17),
    seed=st.integers(0, 2**16),
)
def test_write_read_round_trip(num_samples, num_positions, num_exit_types, num_classes, topk,
                               row_group_size, seed):
    topk = min(topk, num_classes)
    records = make_synthetic_records(
        num_samples, num_positions, num_exit_types, num_classes, topk=topk, seed=seed,
        model="resnet", dataset="cifar", split="val", extra={"note": [1, 2]},
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "records.parquet"
        write_records(path, records, row_group_size=row_group_size)
        back = read_records(path)
        assert pq.ParquetFile(path).num_row_groups == -(-num_samples // row_group_size)
    assert_same_records(back, records)
    assert back.source == str(path)
    assert back.confs.dtype == np.float32
    assert back.preds.dtype == (np.int16 if num_classes <= 32768 else np.int32)


@pytest.mark.parametrize(
    ("num_classes", "label_type"),
    [(2, pa.int8()), (128, pa.int8()), (129, pa.int16()), (1000, pa.int16()),
     (32768, pa.int16()), (32769, pa.int32())],
)
def test_label_column_uses_smallest_signed_type(tmp_path, num_classes, label_type):
    records = make_synthetic_records(20, 2, 1, num_classes)
    write_records(tmp_path / "r.parquet", records)
    schema = pq.read_schema(tmp_path / "r.parquet")
    assert schema.field("label").type == label_type
    assert schema.field("sample_id").type == pa.int64()
    assert schema.field("conf_0").type == pa.list_(pa.float32(), 1)


def test_metadata_describes_every_exit(tmp_path):
    records = make_synthetic_records(30, 3, 2, 10, topk=2, model="m", dataset="d", split="train",
                                     position_names=("layer1", "layer2", "fc"))
    write_records(tmp_path / "r.parquet", records)
    meta = read_records_metadata(tmp_path / "r.parquet")
    assert meta["format_version"] == 1
    assert meta["exit_types"] == ["mlp1x1000", "mlp3x500"]
    assert (meta["num_positions"], meta["topk"], meta["num_classes"]) == (3, 2, 10)
    assert (meta["model"], meta["dataset"], meta["split"]) == ("m", "d", "train")
    assert meta["exits"][3] == {"index": 3, "position": 1, "exit_type": "mlp3x500",
                                "name": "layer2/mlp3x500"}
    assert meta["exits"][-1] == {"index": 4, "position": 2, "exit_type": None, "name": "fc"}


def test_streaming_writer_equals_write_records(tmp_path):
    records = make_synthetic_records(1000, 3, 2, 50, topk=2, seed=3, split="val")
    write_records(tmp_path / "whole.parquet", records, row_group_size=128)
    with RecordWriter(tmp_path / "streamed.parquet", exit_types=records.exit_types,
                      num_positions=3, num_classes=50, topk=2, split="val",
                      row_group_size=128) as writer:
        for start, stop in [(0, 7), (7, 300), (300, 301), (301, 1000)]:
            writer.append(records.labels[start:stop, None], records.preds[:, start:stop],
                          records.confs[:, start:stop].astype(np.float64))
    streamed = pq.ParquetFile(tmp_path / "streamed.parquet")
    assert streamed.num_row_groups == 8
    assert max(streamed.metadata.row_group(i).num_rows for i in range(8)) == 128
    assert_same_records(read_records(tmp_path / "streamed.parquet"),
                        read_records(tmp_path / "whole.parquet"))


def test_exception_inside_writer_leaves_no_file(tmp_path):
    records = make_synthetic_records(100, 2, 1, 10)
    with pytest.raises(RuntimeError), RecordWriter(
        tmp_path / "r.parquet", exit_types=records.exit_types, num_positions=2,
        num_classes=10, topk=1, row_group_size=16,
    ) as writer:
        writer.append(records.labels, records.preds, records.confs)
        raise RuntimeError("recording crashed")
    assert list(tmp_path.iterdir()) == []


def test_invalid_batch_leaves_no_file_and_names_field(tmp_path):
    records = make_synthetic_records(10, 2, 1, 10)
    confs = records.confs.copy()
    confs[1, 4, 0] = np.nan
    with pytest.raises(DyceError) as error, RecordWriter(
        tmp_path / "r.parquet", exit_types=records.exit_types, num_positions=2,
        num_classes=10, topk=1,
    ) as writer:
        writer.append(records.labels, records.preds, confs)
    assert error.value.field == "conf_1" and "NaN" in str(error.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda lab, pre, con: (lab + 10, pre, con), "label"),
        (lambda lab, pre, con: (lab - 11, pre, con), "label"),
        (lambda lab, pre, con: (lab, pre * 0 + 10, con), "pred_0"),
        (lambda lab, pre, con: (lab, pre, con + 1.5), "conf_0"),
        (lambda lab, pre, con: (lab, pre, -con), "conf_0"),
        (lambda lab, pre, con: (lab, pre[:1], con[:1]), "preds"),
        (lambda lab, pre, con: (lab, pre, con[:, :3]), "confs"),
        (lambda lab, pre, con: (lab.astype(float), pre, con), "label"),
    ],
)
def test_writer_rejects_bad_batches(tmp_path, mutate, field):
    records = make_synthetic_records(8, 2, 1, 10)
    labels, preds, confs = mutate(records.labels, records.preds, records.confs)
    with pytest.raises(DyceError) as error, RecordWriter(
        tmp_path / "r.parquet", exit_types=records.exit_types, num_positions=2,
        num_classes=10, topk=1,
    ) as writer:
        writer.append(labels, preds, confs)
    assert error.value.field == field
    assert error.value.path == str(tmp_path / "r.parquet")


@pytest.mark.parametrize("exit_types", ["mlp1x1000", [], ["a", "a"], ["a", ""]])
def test_writer_rejects_bad_exit_type_names(tmp_path, exit_types):
    with pytest.raises(DyceError) as error:
        RecordWriter(tmp_path / "r.parquet", exit_types=exit_types, num_positions=2,
                     num_classes=3, topk=1)
    assert error.value.field == "exit_types"
    assert error.value.path == str(tmp_path / "r.parquet")


def test_empty_records_are_not_written(tmp_path):
    with pytest.raises(DyceError, match="no samples") as error, RecordWriter(
        tmp_path / "r.parquet", exit_types=["a"], num_positions=2, num_classes=3, topk=1,
    ):
        pass
    assert error.value.field == "label"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- bad files


def _rewrite(source: Path, target: Path, table_fn=None, meta_fn=None) -> Path:
    """Copy a records file, changing its Arrow table and/or its ``dyce`` metadata."""
    table = pq.read_table(source)
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    if table_fn is not None:
        table = table_fn(table)
    if meta_fn is not None:
        meta = meta_fn(meta)
    metadata = {} if meta is None else {METADATA_KEY: json.dumps(meta).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), target)
    return target


@pytest.fixture
def good_file(tmp_path) -> Path:
    path = tmp_path / "good.parquet"
    write_records(path, make_synthetic_records(50, 3, 2, 10, seed=1))
    return path


def _set_column(name, values):
    def change(table):
        return table.set_column(table.schema.get_field_index(name), name, values)
    return change


def _list_column(values, dtype):
    return pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(values, dtype=dtype)), 1)


@pytest.mark.parametrize(
    ("table_fn", "meta_fn", "field"),
    [
        (None, lambda meta: None, "metadata.dyce"),
        (None, lambda meta: {**meta, "format_version": 9}, "metadata.dyce.format_version"),
        (None, lambda meta: {k: v for k, v in meta.items() if k != "num_classes"},
         "metadata.dyce.num_classes"),
        (None, lambda meta: {**meta, "num_positions": 4}, "metadata.dyce.position_names"),
        (None, lambda meta: {**meta, "exits": meta["exits"][:-1]}, "metadata.dyce.exits"),
        (lambda t: t.drop_columns(["conf_3"]), None, "conf_3"),
        (lambda t: t.drop_columns(["label"]), None, "label"),
        (_set_column("label", pa.array(np.full(50, 10, dtype=np.int8))), None, "label"),
        (_set_column("pred_2", _list_column(np.full(50, -1), np.int16)), None, "pred_2"),
        (_set_column("conf_4", _list_column(np.full(50, np.nan), np.float32)), None, "conf_4"),
        (_set_column("conf_1", _list_column(np.full(50, 1.01), np.float32)), None, "conf_1"),
        (_set_column("conf_1", pa.array(np.ones(50, np.float32))), None, "conf_1"),
        (lambda t: t.slice(0, 0), None, "label"),
    ],
)
def test_read_rejects_bad_files(good_file, tmp_path, table_fn, meta_fn, field):
    bad = _rewrite(good_file, tmp_path / "bad.parquet", table_fn, meta_fn)
    with pytest.raises(DyceError) as error:
        read_records(bad)
    assert error.value.field == field
    assert error.value.path == str(bad)


def test_exit_count_must_match_metadata(tmp_path):
    write_records(tmp_path / "big.parquet", make_synthetic_records(20, 3, 2, 10))
    smaller = records_metadata(exit_types=["a", "b"], num_positions=2, num_classes=10, topk=1)
    bad = _rewrite(tmp_path / "big.parquet", tmp_path / "bad.parquet", meta_fn=lambda _: smaller)
    with pytest.raises(DyceError, match="5 pred_ columns but its metadata lists 3 exits") as error:
        read_records(bad)
    assert error.value.field == "exits"


def test_non_parquet_and_truncated_files(good_file, tmp_path):
    text = tmp_path / "notes.parquet"
    text.write_text("label,pred\n1,2\n")
    truncated = tmp_path / "cut.parquet"
    truncated.write_bytes(good_file.read_bytes()[: good_file.stat().st_size // 2])
    for path in (text, truncated, tmp_path / "missing.parquet"):
        with pytest.raises(DyceError) as error:
            read_records(path)
        assert error.value.path == str(path)


def test_scan_records_is_lazy_polars(good_file):
    frame = scan_records(good_file)
    labels = frame.select("label").collect()["label"].to_numpy()
    np.testing.assert_array_equal(labels, read_records(good_file).labels)
    assert frame.collect_schema()["pred_0"].shape == (1,)


def test_check_compatible_names_both_files_and_field(good_file, tmp_path):
    records = read_records(good_file)
    macs_path = tmp_path / "macs.json"
    macs_path.write_text(json.dumps(make_synthetic_macs(3, 2)))
    check_compatible(records, load_macs_info(macs_path))
    for positions, types, field in ((4, 2, "num_positions"), (3, 3, "exit_types")):
        macs_path.write_text(json.dumps(make_synthetic_macs(positions, types)))
        with pytest.raises(DyceError) as error:
            check_compatible(records, load_macs_info(macs_path))
        assert error.value.field == field
        assert str(good_file) in str(error.value) and str(macs_path) in str(error.value)


def test_check_same_exit_table(tmp_path):
    train = make_synthetic_records(20, 3, 2, 10, source="train.parquet")
    check_same_exit_table(train, make_synthetic_records(30, 3, 2, 10, seed=5))
    for other, field in (
        (make_synthetic_records(20, 4, 2, 10), "num_positions"),
        (make_synthetic_records(20, 3, 3, 10), "exit_types"),
        (make_synthetic_records(20, 3, 2, 11), "num_classes"),
    ):
        with pytest.raises(DyceError) as error:
            check_same_exit_table(train, other)
        assert error.value.field == field
        assert "train.parquet" in str(error.value)


def test_check_values_flags_out_of_range_predictions():
    records = make_synthetic_records(10, 2, 1, 10)
    records.check_values()
    records.preds[1, 3, 0] = 10
    with pytest.raises(DyceError) as error:
        records.check_values()
    assert error.value.field == "pred_1"


def test_synthetic_records_behave_like_real_ones():
    records = make_synthetic_records(20000, 5, 3, 100, topk=3, seed=2)
    accuracy = records.correct.mean(axis=1)
    by_position = accuracy[:-1].reshape(4, 3)
    assert np.all(np.diff(by_position, axis=0) > 0)  # later positions more accurate
    assert np.all(np.diff(by_position, axis=1) > 0)  # bigger exit types more accurate
    assert accuracy[-1] > accuracy[:-1].max()
    confs = records.top1_confs
    assert confs[records.correct].mean() > confs[~records.correct].mean() + 0.2
    assert confs.min() > 0 and confs.max() <= 1
    assert np.all(np.diff(records.confs, axis=2) <= 0)
    sorted_preds = np.sort(records.preds, axis=2)
    assert np.all(sorted_preds[..., 1:] != sorted_preds[..., :-1])  # top-k classes distinct
