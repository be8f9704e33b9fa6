"""Original .npz records: safe import (never unpickles), conversion, CLI, format dispatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dyce.cli import main
from dyce.errors import DyceError
from dyce.macs.info import load_macs_info
from dyce.records.format import read_records, write_records
from dyce.records.npz import convert_npz, load_any_records, read_npz_records
from tests.synthetic import make_synthetic_macs, make_synthetic_records


def save_original(path: Path, records, **extra) -> Path:
    """Save ``records`` the way the original OutputRecorder did (label (N, 1) int16)."""
    np.savez_compressed(path, label=records.labels[:, None].astype(np.int16),
                        preds=records.preds.astype(np.int16), confs=records.confs, **extra)
    return path


@pytest.fixture
def records():
    return make_synthetic_records(200, 4, 3, 10, topk=2, seed=7)


class CreatesFileWhenUnpickled:
    """Pickle payload: unpickling calls ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_read_npz_records_matches_the_arrays(tmp_path, records):
    path = save_original(tmp_path / "r.npz", records)
    back = read_npz_records(path, ["mlp1x1000", "mlp3x500", "mlp3x1000"], split="val")
    assert (back.num_positions, back.num_exit_types, back.topk) == (4, 3, 2)
    assert back.num_classes == int(max(records.labels.max(), records.preds.max())) + 1
    np.testing.assert_array_equal(back.labels, records.labels)
    np.testing.assert_array_equal(back.preds, records.preds)
    np.testing.assert_array_equal(back.confs, records.confs)
    assert back.split == "val" and back.source == str(path)


def test_exit_types_from_macs_info_and_num_classes_from_caller(tmp_path, records):
    path = save_original(tmp_path / "r.npz", records)
    back = read_npz_records(path, load_macs_info(make_synthetic_macs(4, 3)), num_classes=1000)
    assert back.exit_types == ("mlp1x1000", "mlp3x500", "mlp3x1000")
    assert back.num_classes == 1000


def test_exit_count_must_divide_into_exit_types(tmp_path, records):
    path = save_original(tmp_path / "r.npz", records)  # 10 exits = 3 positions x 3 + 1
    with pytest.raises(DyceError, match="not divisible by 2") as error:
        read_npz_records(path, ["a", "b"])
    assert error.value.field == "preds" and error.value.path == str(path)


def test_pickled_meta_info_is_refused_and_never_executed(tmp_path, records):
    marker = tmp_path / "pwned"
    path = save_original(tmp_path / "r.npz", records,
                         meta_info=np.array(CreatesFileWhenUnpickled(marker), dtype=object))
    with pytest.raises(DyceError, match="unpickling can execute") as error:
        read_npz_records(path, ["a", "b", "c"])
    assert error.value.field == "meta_info"
    assert not marker.exists()
    with pytest.raises(DyceError):
        load_any_records(path, ["a", "b", "c"])
    assert not marker.exists()
    # The payload is real: the original loader (allow_pickle=True) would have run it.
    np.load(path, allow_pickle=True)["meta_info"]
    assert marker.exists()


def test_pickled_meta_info_refusal_names_the_skip_option(tmp_path, records):
    path = save_original(tmp_path / "r.npz", records,
                         meta_info=np.array({"seed": 1}, dtype=object))
    with pytest.raises(DyceError, match="skip_pickled_meta_info=True"):
        read_npz_records(path, ["a", "b", "c"])


def test_skipped_pickled_meta_info_is_never_executed_and_the_arrays_load(tmp_path, records):
    marker = tmp_path / "pwned"
    path = save_original(tmp_path / "r.npz", records,
                         meta_info=np.array(CreatesFileWhenUnpickled(marker), dtype=object))
    with pytest.warns(UserWarning, match="meta_info.*skipped without unpickling"):
        back = read_npz_records(path, ["a", "b", "c"], skip_pickled_meta_info=True)
    assert not marker.exists()
    assert back.extra == {}
    np.testing.assert_array_equal(back.labels, records.labels)
    np.testing.assert_array_equal(back.preds, records.preds)
    np.testing.assert_array_equal(back.confs, records.confs)
    with pytest.warns(UserWarning, match="skipped"):
        converted = convert_npz(path, tmp_path / "r.parquet", "a,b,c",
                                skip_pickled_meta_info=True)
    with pytest.warns(UserWarning, match="skipped"):
        loaded = load_any_records(path, "a,b,c", skip_pickled_meta_info=True)
    assert not marker.exists()
    for other in (converted, loaded, read_records(tmp_path / "r.parquet")):
        np.testing.assert_array_equal(other.preds, records.preds)
        np.testing.assert_array_equal(other.confs, records.confs)


def test_import_npz_cli_skips_pickled_meta_info_only_when_asked(tmp_path, records, capsys):
    marker = tmp_path / "pwned"
    path = save_original(tmp_path / "r.npz", records,
                         meta_info=np.array(CreatesFileWhenUnpickled(marker), dtype=object))
    out = tmp_path / "r.parquet"
    argv = ["import-npz", str(path), "--exit-types", "a,b,c", "--out", str(out)]
    assert main(argv) == 2
    assert "--skip-meta-info" in capsys.readouterr().err
    assert not out.exists()
    assert main([*argv, "--skip-meta-info"]) == 0
    captured = capsys.readouterr()
    assert "200 samples" in captured.out
    assert captured.err.startswith("dyce import-npz: warning: ") and "skipped" in captured.err
    assert not marker.exists()
    np.testing.assert_array_equal(read_records(out).labels, records.labels)


def test_plain_meta_info_is_kept(tmp_path, records):
    path = save_original(tmp_path / "r.npz", records, meta_info=np.array([3, 1, 4]))
    back = read_npz_records(path, "a,b,c")
    assert back.extra == {"meta_info": [3, 1, 4]}


def _without(key):
    return lambda data: {k: v for k, v in data.items() if k != key}


def _with(key, change):
    return lambda data: {**data, key: change(data[key])}


def _nan_at_exit_3(confs):
    confs = confs.copy()
    confs[3, 5, 0] = np.nan
    return confs


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_without("label"), "label"),
        (_without("preds"), "preds"),
        (_without("confs"), "confs"),
        (_with("label", lambda label: label.astype(float)), "label"),
        (_with("label", lambda label: label + 10), "label"),
        (_with("preds", lambda preds: preds[:, :-1]), "preds"),
        (_with("confs", lambda confs: confs[:, :-1]), "confs"),
        (_with("confs", _nan_at_exit_3), "conf_3"),
        (_with("confs", lambda confs: confs.astype(object)), "confs"),
    ],
)
def test_bad_arrays_name_the_field(tmp_path, records, mutate, field):
    data = {"label": records.labels[:, None], "preds": records.preds, "confs": records.confs}
    np.savez(tmp_path / "bad.npz", **mutate(data))
    with pytest.raises(DyceError) as error:
        read_npz_records(tmp_path / "bad.npz", ["a", "b", "c"], num_classes=10)
    assert error.value.field == field
    assert error.value.path == str(tmp_path / "bad.npz")


def test_not_an_npz_file(tmp_path):
    path = tmp_path / "r.npz"
    path.write_text("not an archive")
    with pytest.raises(DyceError) as error:
        read_npz_records(path, ["a"])
    assert error.value.path == str(path)


def test_convert_npz_writes_equal_parquet(tmp_path, records):
    path = save_original(tmp_path / "r.npz", records)
    convert_npz(path, tmp_path / "r.parquet", ["x", "y", "z"], num_classes=10, model="m")
    back = read_records(tmp_path / "r.parquet")
    np.testing.assert_array_equal(back.preds, records.preds)
    np.testing.assert_array_equal(back.confs, records.confs)
    assert back.exit_types == ("x", "y", "z") and back.model == "m" and back.num_classes == 10


def test_import_npz_cli(tmp_path, records, capsys):
    path = save_original(tmp_path / "r.npz", records)
    macs = tmp_path / "macs.json"
    macs.write_text(json.dumps(make_synthetic_macs(4, 3)))
    out = tmp_path / "out" / "r.parquet"
    assert main(["import-npz", str(path), "--macs-info", str(macs), "--num-classes", "10",
                 "--dataset", "cifar", "--split", "val", "--out", str(out)]) == 0
    assert "200 samples" in capsys.readouterr().out
    back = read_records(out)
    assert (back.dataset, back.split, back.exit_types[0]) == ("cifar", "val", "mlp1x1000")
    np.testing.assert_array_equal(back.labels, records.labels)

    wrong = tmp_path / "wrong.parquet"
    assert main(["import-npz", str(path), "--exit-types", "a,b", "--out", str(wrong)]) == 2
    assert "field 'preds'" in capsys.readouterr().err
    assert not wrong.exists()

    macs.write_text(json.dumps(make_synthetic_macs(5, 3)))  # positions disagree
    assert main(["import-npz", str(path), "--macs-info", str(macs), "--out", str(wrong)]) == 2
    assert "num_positions" in capsys.readouterr().err
    assert not wrong.exists()


def test_load_any_records_dispatches_on_content(tmp_path, records):
    npz = save_original(tmp_path / "r.npz", records)
    with pytest.raises(DyceError) as error:
        load_any_records(npz)
    assert error.value.field == "exit_types"
    assert load_any_records(npz, ["a", "b", "c"]).num_positions == 4

    parquet_named_npz = tmp_path / "saved_by_recorder.npz"
    write_records(parquet_named_npz, records)
    back = load_any_records(parquet_named_npz)
    np.testing.assert_array_equal(back.confs, records.confs)
    load_any_records(parquet_named_npz, load_macs_info(make_synthetic_macs(4, 3)))
    with pytest.raises(DyceError) as error:
        load_any_records(parquet_named_npz, load_macs_info(make_synthetic_macs(5, 3)))
    assert error.value.field == "num_positions"
    with pytest.raises(DyceError) as error:
        load_any_records(parquet_named_npz, ["a", "b", "c"])
    assert error.value.field == "exit_types"

    macs_path = tmp_path / "macs.json"
    macs_path.write_text(json.dumps(make_synthetic_macs(4, 3)))
    assert load_any_records(npz, macs_path).exit_types[2] == "mlp3x1000"
    assert load_any_records(parquet_named_npz, str(macs_path)).num_positions == 4
