"""Datasets and splits: deterministic, disjoint, stratified; bad input names file and field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dyce.cli import main
from dyce.data.splits import eval_transform, load_split, load_splits, prepare_splits
from dyce.errors import DyceError


@pytest.fixture(scope="module")
def digits_labels() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().target


def test_digits_splits_are_disjoint_stratified_and_cover_the_data(digits_labels):
    splits = prepare_splits("digits", seed=3, val_fraction=0.2, search_fraction=0.25,
                            calib_fraction=0.15)
    names = ("train", "search", "calib", "val")
    sets = {name: set(splits["splits"][name]) for name in names}
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not sets[first] & sets[second], (first, second)
    assert set().union(*sets.values()) == set(range(len(digits_labels)))
    val, search, calib = sets["val"], sets["search"], sets["calib"]
    assert len(val) == pytest.approx(0.2 * len(digits_labels), abs=1)
    assert len(search) == pytest.approx(0.25 * (len(digits_labels) - len(val)), abs=1)
    assert len(calib) == pytest.approx(0.15 * (len(digits_labels) - len(val)), abs=2)
    overall = np.bincount(digits_labels, minlength=10) / len(digits_labels)
    for name in ("val", "search", "calib"):
        share = np.bincount(digits_labels[sorted(splits["splits"][name])], minlength=10)
        assert np.allclose(share / share.sum(), overall, atol=0.01), name
    assert splits["num_classes"] == 10 and splits["in_channels"] == 1
    assert splits["image_size"] == 8


def test_splits_depend_only_on_the_seed():
    first = prepare_splits("digits", seed=7)
    again = prepare_splits("digits", seed=7)
    other = prepare_splits("digits", seed=8)
    assert first["splits"] == again["splits"]
    assert first["splits"]["val"] != other["splits"]["val"]


def test_search_on_train_reuses_the_training_samples():
    splits = prepare_splits("digits", seed=0, search_split="train")
    assert splits["splits"]["search"] == splits["splits"]["train"]
    assert not set(splits["splits"]["calib"]) & set(splits["splits"]["train"])
    assert sum(len(splits["splits"][n]) for n in ("train", "calib", "val")) == 1797


def test_a_calib_split_leaves_the_search_split_as_it_was():
    without = prepare_splits("digits", seed=5, calib_fraction=0.0)
    with_calib = prepare_splits("digits", seed=5, calib_fraction=0.1)
    assert without["splits"]["calib"] == []
    assert with_calib["splits"]["search"] == without["splits"]["search"]
    assert with_calib["splits"]["val"] == without["splits"]["val"]
    assert set(with_calib["splits"]["train"]) | set(with_calib["splits"]["calib"]) == set(
        without["splits"]["train"])


def test_splits_without_calib_read_as_an_empty_calib_split(tmp_path):
    splits = prepare_splits("digits", seed=2)
    del splits["splits"]["calib"], splits["pools"]["calib"], splits["calib_fraction"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(splits))
    assert load_splits(path)["splits"]["calib"] == []
    assert len(load_split(path, "val")) == len(splits["splits"]["val"])
    with pytest.raises(DyceError, match="splits.calib.*empty"):
        load_split(path, "calib")


def test_deformed_digits_split_by_source_image(digits_labels):
    from dyce.data.deformed_digits import DeformedDigitsPool

    copies = 16
    splits = prepare_splits("digits_deformed", seed=0, val_fraction=0.2, search_fraction=0.25,
                            calib_fraction=0.25, copies=copies)
    sources = {name: {i // copies for i in splits["splits"][name]} for name in splits["splits"]}
    names = list(sources)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not sources[first] & sources[second], (first, second)
    for name, indices in splits["splits"].items():
        assert len(indices) == copies * len(sources[name])  # every copy of every source
    assert len(splits["splits"]["val"]) >= 5000 and len(splits["splits"]["calib"]) >= 5000
    pool = DeformedDigitsPool(8, copies, seed=0)
    assert len(pool) == 1797 * copies
    assert pool.targets[::copies] == list(digits_labels)
    plain = load_split(prepare_splits("digits", seed=0), "val").pool
    assert torch.equal(pool.images[::copies], plain.images)  # copy 0 is the image itself
    deformed = pool.images.view(1797, copies, 1, 8, 8)
    assert (deformed[:, 1:] != deformed[:, :1]).any(dim=(2, 3, 4)).all()  # the others differ
    again = load_split(splits, "calib")
    image, label, sample_id = again[7]
    assert torch.equal(image, pool.images[sample_id]) and label == pool.targets[sample_id]


def test_load_split_yields_normalised_images_labels_and_sample_ids(digits_labels):
    splits = prepare_splits("digits", seed=1)
    dataset = load_split(splits, "search")
    assert len(dataset) == len(splits["splits"]["search"])
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    assert images.shape == (len(dataset), 1, 8, 8) and images.dtype == torch.float32
    assert abs(float(images.mean())) < 0.1 and 0.8 < float(images.std()) < 1.2
    for item in (0, 5, len(dataset) - 1):
        _, label, sample_id = dataset[item]
        assert sample_id == splits["splits"]["search"][item]
        assert label == digits_labels[sample_id]


def test_digits_can_be_resized_for_larger_backbones():
    splits = prepare_splits("digits", seed=0, image_size=16)
    image, _, _ = load_split(splits, "val")[0]
    assert image.shape == (1, 16, 16)


def test_splits_round_trip_through_the_cli(tmp_path):
    out = tmp_path / "splits.json"
    assert main(["prepare-data", "--dataset", "digits", "--seed", "4", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["splits"] == prepare_splits("digits", seed=4)["splits"]
    assert len(load_split(out, "train")) == len(written["splits"]["train"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--dataset", "mnist"], "dataset"),
        (["--dataset", "cifar10"], "root"),
        (["--dataset", "cifar10", "--root", "{missing}"], "root"),
        (["--dataset", "cifar100", "--root", "{empty}"], "root"),
        (["--dataset", "imagefolder", "--root", "{empty}"], "root"),
        (["--dataset", "digits", "--val-fraction", "1.5"], "val_fraction"),
        (["--dataset", "digits", "--search-fraction", "0"], "search_fraction"),
    ],
)
def test_bad_requests_fail_with_one_line_and_write_nothing(tmp_path, capsys, argv, expected):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "splits.json"
    argv = [a.format(missing=tmp_path / "nope", empty=tmp_path / "empty") for a in argv]
    assert main(["prepare-data", *argv, "--seed", "0", "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and f"'{expected}'" in message
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "empty"]


def test_damaged_splits_files_name_file_and_field(tmp_path):
    splits = prepare_splits("digits", seed=0)
    path = tmp_path / "splits.json"
    broken = dict(splits, splits={**splits["splits"], "val": [0, 1, 99999]})
    path.write_text(json.dumps(broken))
    with pytest.raises(DyceError, match=r"splits\.json: field 'splits\.val'.*out of range"):
        load_split(path, "val")
    path.write_text(json.dumps(dict(splits, pool_sizes={"all": 2000})))
    with pytest.raises(DyceError, match=r"splits\.json: field 'pool_sizes'.*2000 samples"):
        load_split(path, "train")
    del broken["num_classes"]
    path.write_text(json.dumps(broken))
    with pytest.raises(DyceError, match=r"splits\.json: field 'num_classes': missing"):
        load_splits(path)
    path.write_text("{not json")
    with pytest.raises(DyceError, match=r"splits\.json.*not a JSON file"):
        load_splits(path)
    with pytest.raises(DyceError, match="field 'split'"):
        load_split(splits, "test")


def _write_image_folder(root, classes, per_class):
    from PIL import Image

    rng = np.random.default_rng(0)
    for pool, count in per_class.items():
        for name in classes[pool]:
            folder = root / pool / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")


def test_image_folder_uses_its_val_folder_and_standard_transforms(tmp_path):
    classes = {"train": ["cat", "dog"], "val": ["cat", "dog"]}
    _write_image_folder(tmp_path, classes, {"train": 4, "val": 2})
    splits = prepare_splits(
        "imagefolder", root=tmp_path, seed=0, search_fraction=0.5, image_size=16
    )
    assert splits["classes"] == ["cat", "dog"] and splits["num_classes"] == 2
    assert splits["splits"]["val"] == [0, 1, 2, 3]
    assert sorted(splits["splits"]["train"] + splits["splits"]["search"]) == list(range(8))
    image, label, sample_id = load_split(splits, "val")[3]
    assert image.shape == (3, 16, 16) and label == 1 and sample_id == 3
    augmented, _, _ = load_split(splits, "train", train_transforms=True)[0]
    assert augmented.shape == (3, 16, 16)


def test_image_folder_with_different_val_classes_is_refused(tmp_path):
    _write_image_folder(
        tmp_path, {"train": ["cat", "dog"], "val": ["cat", "emu"]}, {"train": 2, "val": 1}
    )
    with pytest.raises(DyceError, match="field 'classes'"):
        prepare_splits("imagefolder", root=tmp_path, seed=0, search_split="train")


def test_eval_transform_of_digits_reproduces_the_val_images():
    from PIL import Image
    from sklearn.datasets import load_digits

    splits = prepare_splits("digits", seed=0)
    val = load_split(splits, "val")
    transform = eval_transform(splits)
    digits = load_digits()
    for item in (0, 7):
        expected, _, sample_id = val[item]
        pixels = np.round(digits.images[sample_id] * 255 / 16).astype(np.uint8)
        image = transform(Image.fromarray(pixels, mode="L"))
        assert image.shape == (1, 8, 8) and image.dtype == torch.float32
        # 8-bit pixels round the 0..16 levels by at most half a grey step
        assert torch.allclose(image, expected, atol=0.5 / 255 / 0.376 + 1e-6)


def test_eval_transform_of_an_image_folder_is_its_val_preprocessing(tmp_path):
    from PIL import Image

    _write_image_folder(tmp_path, {"train": ["a"], "val": ["a"]}, {"train": 2, "val": 1})
    splits = prepare_splits("imagefolder", root=tmp_path, seed=0, search_fraction=0.5,
                            image_size=16)
    expected, _, _ = load_split(splits, "val")[0]
    with Image.open(tmp_path / "val" / "a" / "0.png") as image:
        assert torch.equal(eval_transform(splits)(image.convert("RGB")), expected)
        assert torch.equal(eval_transform("imagefolder", (16, 16))(image.convert("RGB")), expected)


def test_eval_transform_refuses_unknown_datasets_and_non_square_sizes():
    with pytest.raises(DyceError, match="unknown dataset"):
        eval_transform("mnist")
    with pytest.raises(DyceError) as error:
        eval_transform("cifar10", (32, 24))
    assert error.value.field == "input_size"
    assert eval_transform("digits", (8, 12), in_channels=3) is not None


def test_an_image_folder_without_image_size_warns_that_the_size_is_implied(tmp_path, capsys):
    classes = {"train": ["cat", "dog"], "val": ["cat", "dog"]}
    _write_image_folder(tmp_path, classes, {"train": 4, "val": 2})
    implied = prepare_splits("imagefolder", root=tmp_path, seed=0, search_fraction=0.5)
    assert len(implied["warnings"]) == 1
    assert "no image_size" in implied["warnings"][0] and "24x20 px" in implied["warnings"][0]
    given = prepare_splits("imagefolder", root=tmp_path, seed=0, search_fraction=0.5,
                           image_size=16)
    assert given["warnings"] == []
    out = tmp_path / "splits.json"
    assert main(["prepare-data", "--dataset", "imagefolder", "--root", str(tmp_path),
                 "--seed", "0", "--search-fraction", "0.5", "--out", str(out)]) == 0
    assert "WARNING: no image_size given" in capsys.readouterr().err
