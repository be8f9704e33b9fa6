"""End to end on digits: prepare, train backbone and exits, record every split, read it back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dyce.cli import main
from dyce.data.splits import load_split
from dyce.errors import DyceError
from dyce.network.models import load_exits_checkpoint
from dyce.records.format import read_records
from dyce.records.recording import exit_topk, record_split

EXIT_TYPES = ("mlp1x1000", "mlp2x32")
TOPK = 3
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run the four commands as a user would; returns the folder with every artifact."""
    folder = tmp_path_factory.mktemp("digits")
    data, backbone, exits = folder / "splits.json", folder / "backbone.pt", folder / "exits.pt"
    steps = [
        ["prepare-data", "--dataset", "digits", "--seed", "2", "--out", str(data)],
        ["train-backbone", "--data", str(data), "--model", "small_resnet8", "--epochs", "4",
         "--batch-size", "128", "--device", "cpu", "--out", str(backbone)],
        ["train-exits", "--data", str(data), "--model", "small_resnet8", "--backbone",
         str(backbone), "--exit-types", ",".join(EXIT_TYPES), "--epochs", "2",
         "--batch-size", "128", "--device", "cpu", "--checkpoint-dir", str(folder / "ckpt"),
         "--out", str(exits)],
    ]
    steps += [
        ["record", "--exits", str(exits), "--data", str(data), "--split", split, "--topk",
         str(TOPK), "--batch-size", "100", "--device", "cpu", "--out",
         str(folder / f"{split}.parquet")]
        for split in ("train", "search", "val")
    ]
    for argv in steps:
        assert main(argv) == 0, argv
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "search", "val"])
def test_records_of_every_split_load_with_their_layout(pipeline, split):
    from sklearn.datasets import load_digits

    splits = json.loads((pipeline / "splits.json").read_text())
    records = read_records(pipeline / f"{split}.parquet")
    net = load_exits_checkpoint(pipeline / "exits.pt")
    taps = net.spec["taps"]
    assert records.split == split and records.dataset == "digits"
    assert records.model == "small_resnet8"
    assert records.exit_types == EXIT_TYPES and records.num_classes == 10
    assert records.num_positions == len(taps) + 1
    assert tuple(records.position_names) == (*taps, "final")
    expected_ids = np.asarray(splits["splits"][split])
    assert records.preds.shape == (len(taps) * len(EXIT_TYPES) + 1, len(expected_ids), TOPK)
    np.testing.assert_array_equal(records.sample_ids, expected_ids)
    np.testing.assert_array_equal(records.labels, load_digits().target[expected_ids])
    assert np.all(np.diff(records.confs, axis=2) <= 0)  # best first
    assert np.all(records.confs > 0) and np.all(records.confs.sum(axis=2) <= 1 + 1e-5)
    assert np.all(np.sort(records.preds, axis=2)[:, :, 1:] != np.sort(records.preds, axis=2)[:, :, :-1])


@pytest.mark.slow
def test_records_are_what_the_saved_network_predicts(pipeline):
    records = read_records(pipeline / "val.parquet")
    net = load_exits_checkpoint(pipeline / "exits.pt")
    dataset = load_split(pipeline / "splits.json", "val")
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        final_logits, exit_logits = net(images)
    expected = torch.cat([exit_logits.transpose(0, 1), final_logits[None]]).softmax(-1)
    np.testing.assert_array_equal(records.top1_preds, expected.argmax(-1).numpy())
    np.testing.assert_allclose(records.top1_confs, expected.amax(-1).numpy(), rtol=1e-5)
    assert records.final_accuracy > 0.8


def test_exit_topk_orders_exits_position_major_with_the_final_head_last():
    exit_logits = torch.zeros(2, 3, 4)
    for e in range(3):
        exit_logits[:, e, e] = 5.0  # exit e predicts class e
    final_logits = torch.tensor([[0.0, 0.0, 0.0, 9.0], [0.0, 0.0, 0.0, 9.0]])
    preds, confs = exit_topk(final_logits, exit_logits, topk=2)
    assert preds.shape == confs.shape == (4, 2, 2)
    assert preds[:, :, 0].tolist() == [[0, 0], [1, 1], [2, 2], [3, 3]]
    assert torch.allclose(confs[-1, :, 0], torch.softmax(final_logits, -1)[:, 3])


class FailingDataset(torch.utils.data.Dataset):
    """Digits val split that breaks after ``fail_at`` samples (a crash mid-recording)."""

    def __init__(self, inner, fail_at):
        self.inner, self.fail_at = inner, fail_at

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, item):
        if item >= self.fail_at:
            raise OSError("disk went away")
        return self.inner[item]


@pytest.mark.slow
def test_a_failed_recording_leaves_no_file(pipeline, tmp_path):
    net = load_exits_checkpoint(pipeline / "exits.pt")
    dataset = FailingDataset(load_split(pipeline / "splits.json", "val"), fail_at=250)
    options = dict(batch_size=50, device="cpu", model="m", dataset_name="digits", split="val")
    with pytest.raises(OSError, match="disk went away"):
        record_split(net, dataset, topk=1, out_path=tmp_path / "val.parquet", **options)
    with pytest.raises(DyceError, match="field 'topk'"):
        record_split(net, dataset.inner, topk=11, out_path=tmp_path / "val.parquet", **options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_record_refuses_data_the_exits_were_not_trained_for(pipeline, tmp_path, capsys):
    other = tmp_path / "splits16.json"
    assert main(["prepare-data", "--dataset", "digits", "--seed", "2", "--image-size", "16",
                 "--out", str(other)]) == 0
    out = tmp_path / "val.parquet"
    assert main(["record", "--exits", str(pipeline / "exits.pt"), "--data", str(other),
                 "--split", "val", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "field 'input_size'" in error
    assert not out.exists()
