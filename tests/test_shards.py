"""Sharded recording and feature caching: K shard jobs joined equal one job."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyce.cli import main
from dyce.data.shards import Shard, concat_records, parse_shard, shard_range
from dyce.errors import DyceError
from dyce.records.format import read_records

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@given(num_samples=st.integers(1, 5000), batch_size=st.integers(1, 300),
       count=st.integers(1, 12))
def test_shards_partition_the_split_on_batch_boundaries(num_samples, batch_size, count):
    batches = -(-num_samples // batch_size)
    if batches < count:
        with pytest.raises(DyceError, match="shard"):
            shard_range(num_samples, batch_size, Shard(1, count))
        return
    ranges = [shard_range(num_samples, batch_size, Shard(i, count)) for i in range(1, count + 1)]
    assert ranges[0][0] == 0 and ranges[-1][1] == num_samples
    for (_, stop), (start, _) in zip(ranges[:-1], ranges[1:], strict=True):
        assert stop == start and stop % batch_size == 0
    assert all(stop > start for start, stop in ranges)
    sizes = [-(-(stop - start) // batch_size) for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1  # batches dealt out evenly


def test_shard_text_is_parsed_and_checked():
    assert parse_shard("2/3") == Shard(2, 3)
    assert parse_shard("1/1") is None and parse_shard(None) is None
    for text in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(DyceError, match="field 'shard'"):
            parse_shard(text)


def _write_image_folder(root, classes, per_class):
    from PIL import Image

    rng = np.random.default_rng(0)
    for pool, count in per_class.items():
        for name in classes:
            folder = root / pool / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny ImageNet-layout folder (3 classes), its splits, a backbone and trained exits."""
    folder = tmp_path_factory.mktemp("shards")
    _write_image_folder(folder / "images", ["ant", "bee", "cow"], {"train": 9, "val": 5})
    data, backbone, exits = folder / "splits.json", folder / "backbone.pt", folder / "exits.pt"
    steps = [
        ["prepare-data", "--dataset", "imagefolder", "--root", str(folder / "images"),
         "--image-size", "16", "--seed", "0", "--search-fraction", "0.34", "--out", str(data)],
        ["train-backbone", "--data", str(data), "--model", "small_resnet8", "--epochs", "1",
         "--batch-size", "8", "--device", "cpu", "--out", str(backbone)],
        ["train-exits", "--data", str(data), "--model", "small_resnet8", "--backbone",
         str(backbone), "--exit-types", "mlp1x8,mlp2x8", "--epochs", "1", "--batch-size", "8",
         "--device", "cpu", "--out", str(exits)],
    ]
    for argv in steps:
        assert main(argv) == 0, argv
    return folder


def _record(folder, out, *extra):
    argv = ["record", "--exits", str(folder / "exits.pt"), "--data", str(folder / "splits.json"),
            "--split", "val", "--topk", "2", "--batch-size", "4", "--device", "cpu", "--out",
            str(out), *extra]
    assert main(argv) == 0, argv


@pytest.mark.slow
def test_three_record_shards_joined_equal_one_job_on_an_image_folder(tiny_folder):
    one_job = tiny_folder / "val.parquet"
    _record(tiny_folder, one_job)
    shards = [tiny_folder / f"val.{i}of3.parquet" for i in (1, 2, 3)]
    for index, path in enumerate(shards, 1):
        _record(tiny_folder, path, "--shard", f"{index}/3")
    sizes = [read_records(path).num_samples for path in shards]
    assert sizes == [4, 4, 7]  # 15 samples, 4 batches of 4 dealt out 1, 1, 2
    assert read_records(shards[1]).extra["shard"] == {
        "index": 2, "count": 3, "start": 4, "stop": 8, "num_samples": 15}
    joined = tiny_folder / "joined.parquet"
    assert main(["concat-records", *map(str, shards), "--out", str(joined)]) == 0
    expected, actual = read_records(one_job), read_records(joined)
    for name in ("labels", "preds", "confs", "sample_ids"):
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name))
    assert actual.extra == {} and actual.split == "val" and actual.dataset == "imagefolder"
    # the same file: metadata, row groups, bytes
    assert pq.ParquetFile(joined).schema_arrow == pq.ParquetFile(one_job).schema_arrow
    assert joined.read_bytes() == one_job.read_bytes()


@pytest.mark.slow
def test_three_feature_cache_shards_joined_equal_one_job(tiny_folder):
    from dyce.network.features import open_feature_cache

    def cache(out, *extra):
        argv = ["cache-features", "--data", str(tiny_folder / "splits.json"), "--model",
                "small_resnet8", "--backbone", str(tiny_folder / "backbone.pt"), "--split",
                "val", "--batch-size", "4", "--device", "cpu", "--out", str(out), *extra]
        assert main(argv) == 0, argv

    cache(tiny_folder / "features")
    shards = [tiny_folder / f"features.{i}of3" for i in (1, 2, 3)]
    for index, path in enumerate(shards, 1):
        cache(path, "--shard", f"{index}/3")
    joined = tiny_folder / "features_joined"
    assert main(["concat-features", *map(str, shards), "--out", str(joined)]) == 0
    expected, actual = open_feature_cache(tiny_folder / "features"), open_feature_cache(joined)
    assert actual.meta == expected.meta
    for name in ("sample_ids", "labels", "final"):
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name))
    for mine, theirs in zip(actual.taps, expected.taps, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # and records from the joined cache equal records from the network
    _record(tiny_folder, tiny_folder / "val_net.parquet")
    _record(tiny_folder, tiny_folder / "val_cache.parquet", "--features", str(joined))
    net, cached = (read_records(tiny_folder / f"val_{k}.parquet") for k in ("net", "cache"))
    np.testing.assert_allclose(cached.confs, net.confs, atol=2e-3)
    np.testing.assert_array_equal(cached.sample_ids, net.sample_ids)
    # an unjoined shard is not a cache to train or record from
    assert main(["record", "--exits", str(tiny_folder / "exits.pt"), "--data",
                 str(tiny_folder / "splits.json"), "--split", "val", "--device", "cpu",
                 "--features", str(shards[0]), "--out", str(tiny_folder / "x.parquet")]) == 2


@pytest.mark.slow
def test_incomplete_or_mixed_shards_are_refused(tiny_folder, tmp_path):
    shards = []
    for index in (1, 2, 3):
        path = tmp_path / f"{index}.parquet"
        _record(tiny_folder, path, "--shard", f"{index}/3")
        shards.append(path)
    out = tmp_path / "out.parquet"
    for given_shards, field in (
        (shards[:2], "shard.count"),
        ([shards[0], shards[2], shards[1]], "shard.index"),
        ([shards[0], shards[0], shards[2]], "shard.index"),
    ):
        with pytest.raises(DyceError, match=field.replace(".", r"\.")):
            concat_records(given_shards, out)
        assert not out.exists()
    other = tmp_path / "top1.parquet"
    _record(tiny_folder, other, "--shard", "2/3", "--topk", "1")
    with pytest.raises(DyceError, match="topk"):
        concat_records([shards[0], other, shards[2]], out)
    whole = tmp_path / "whole.parquet"
    _record(tiny_folder, whole)
    with pytest.raises(DyceError, match="not a shard"):
        concat_records([whole], out)
    assert not out.exists()


@pytest.mark.slow
def test_more_shards_than_batches_is_a_clear_error(tiny_folder, capsys):
    out = tiny_folder / "too_many.parquet"
    argv = ["record", "--exits", str(tiny_folder / "exits.pt"), "--data",
            str(tiny_folder / "splits.json"), "--split", "val", "--batch-size", "8",
            "--device", "cpu", "--shard", "1/3", "--out", str(out)]
    assert main(argv) == 2
    assert "too few for 3 shards" in capsys.readouterr().err
    assert not out.exists()
