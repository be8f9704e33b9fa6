"""``macs_info`` (seed JSON format): loading, validation errors, shared MACs, saving."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from dyce.errors import DyceError
from dyce.macs.info import MacsInfo, load_macs_info, save_macs_info
from tests.synthetic import make_synthetic_macs

SEED_EXAMPLE = {
    "head": [
        {"name": "mlp1x1000", "macs": [40000, 80000, 160000, 160000, 160000, 320000, 0],
         "params": []},
        {"name": "mlp3x500", "macs": [770000, 790000, 830000, 830000, 830000, 910000, 0],
         "params": []},
    ],
    "backbone": {
        "name": "convnextv2_atto",
        "macs": [52308480, 151845120, 288449280, 371804160, 455159040, 506103360, 547332480],
        "ori_macs": 547332480,
    },
}


def test_seed_readme_example_loads(tmp_path):
    path = tmp_path / "macs.json"
    path.write_text(json.dumps(SEED_EXAMPLE))
    macs = load_macs_info(path)
    assert macs.head_names == ("mlp1x1000", "mlp3x500")
    assert (macs.num_positions, macs.num_exit_types, macs.ori_macs) == (7, 2, 547332480)
    assert macs.head_macs.shape == (2, 7) and macs.head_macs[1, 5] == 910000
    np.testing.assert_array_equal(macs.backbone_macs, SEED_EXAMPLE["backbone"]["macs"])
    assert macs.source == str(path)
    assert load_macs_info(macs) is macs and load_macs_info(SEED_EXAMPLE).source is None


def test_shared_macs_are_added_to_backbone():
    data = copy.deepcopy(SEED_EXAMPLE)
    data["shared"] = {"macs": [1, 2, 3, 4, 5, 6, 0]}
    macs = load_macs_info(data)
    expected = np.asarray(SEED_EXAMPLE["backbone"]["macs"]) + [1, 2, 3, 4, 5, 6, 0]
    np.testing.assert_array_equal(macs.backbone_macs, expected)
    assert macs.raw["shared"] == {"macs": [1, 2, 3, 4, 5, 6, 0]}  # written back unchanged


def _edit(change):
    data = copy.deepcopy(SEED_EXAMPLE)
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_edit(lambda d: d.pop("head")), "head"),
        (_edit(lambda d: d.update(head=[])), "head"),
        (_edit(lambda d: d.pop("backbone")), "backbone"),
        (_edit(lambda d: d["backbone"].pop("macs")), "backbone.macs"),
        (_edit(lambda d: d["backbone"].pop("ori_macs")), "backbone.ori_macs"),
        (_edit(lambda d: d["backbone"].update(ori_macs=0)), "backbone.ori_macs"),
        (_edit(lambda d: d["head"][1].pop("macs")), "head[1].macs"),
        (_edit(lambda d: d["head"][1]["macs"].pop()), "head[1].macs"),
        (_edit(lambda d: d["head"][0]["macs"].__setitem__(2, -5)), "head[0].macs"),
        (_edit(lambda d: d["head"][0]["macs"].__setitem__(2, "many")), "head[0].macs"),
        (_edit(lambda d: d["head"].__setitem__(0, [1, 2])), "head[0]"),
        (_edit(lambda d: d.update(shared={"macs": [1, 2, 3]})), "shared.macs"),
        (_edit(lambda d: d.update(shared=[1, 2, 3])), "shared"),
    ],
)
def test_invalid_macs_info_names_file_and_field(tmp_path, data, field):
    path = tmp_path / "macs.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DyceError) as error:
        load_macs_info(path)
    assert error.value.field == field
    assert error.value.path == str(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(DyceError, match="not found"):
        load_macs_info(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"head": [')
    with pytest.raises(DyceError, match="not valid JSON") as error:
        load_macs_info(broken)
    assert error.value.path == str(broken)
    with pytest.raises(DyceError, match="cannot be read") as error:
        load_macs_info(tmp_path)  # a folder
    assert error.value.path == str(tmp_path)


def test_save_validates_before_writing(tmp_path):
    path = tmp_path / "out" / "macs.json"
    save_macs_info(path, make_synthetic_macs(5, 3))
    macs = load_macs_info(path)
    assert isinstance(macs, MacsInfo) and macs.raw == make_synthetic_macs(5, 3)
    bad = tmp_path / "bad.json"
    with pytest.raises(DyceError):
        save_macs_info(bad, _edit(lambda d: d["head"][1]["macs"].pop()))
    assert not bad.exists()


def test_synthetic_macs_follow_the_format():
    macs = load_macs_info(make_synthetic_macs(8, 5))
    assert np.all(np.diff(macs.backbone_macs) >= 0)
    assert macs.backbone_macs[-1] == macs.ori_macs
    assert np.all(macs.head_macs[:, -1] == 0) and np.all(macs.head_macs[:, :-1] > 0)
