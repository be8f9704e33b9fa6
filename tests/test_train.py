"""Backbone and exit training: accuracy, distillation loss, frozen backbone, seeding, resuming."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import dyce.network.training as train_module
from dyce.cli import main
from dyce.data.splits import load_split, prepare_splits
from dyce.errors import DyceError
from dyce.network.training import (
    distillation_loss,
    evaluate_accuracy,
    load_backbone,
    prepare_exit_network,
    save_backbone,
    train_backbone,
    train_exits,
)

MODEL = "small_resnet8"
EXIT_TYPES = "mlp1x1000,mlp2x32"
EXIT_SETTINGS = dict(
    lr=1e-2, batch_size=128, weight_decay=1e-4, temperature=2.0, distill_weight=0.7, seed=5,
    device="cpu",
)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def splits():
    return prepare_splits("digits", seed=0)


@pytest.fixture(scope="module")
def backbone_file(splits, tmp_path_factory):
    """A small ResNet trained on digits (8 epochs) saved as BACKBONE.pt."""
    result = train_backbone(
        splits, MODEL, epochs=8, lr=3e-3, batch_size=64, weight_decay=5e-4, seed=0,
        device="cpu",
    )
    path = tmp_path_factory.mktemp("backbone") / "backbone.pt"
    save_backbone(path, result.model, result.spec, result.history)
    return path, result


def _exit_net(splits, backbone_file, seed=5):
    return prepare_exit_network(
        splits, MODEL, backbone_path=backbone_file[0], exit_types=EXIT_TYPES, seed=seed
    )


def _same_state(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.slow
def test_backbone_learns_digits(splits, backbone_file):
    _, result = backbone_file
    accuracy = evaluate_accuracy(result.model, load_split(splits, "val"), device="cpu")
    assert accuracy >= 0.95
    assert len(result.history) == 8 and result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.spec == {
        "model": MODEL, "num_classes": 10, "in_channels": 1, "input_size": 8, "dataset": "digits"
    }


def test_backbone_file_round_trips_and_rejects_foreign_files(backbone_file, tmp_path):
    path, result = backbone_file
    state, spec = load_backbone(path)
    assert spec == result.spec
    assert _same_state(state, {k: v.cpu() for k, v in result.model.state_dict().items()})
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(DyceError, match=r"foreign\.pt: field 'format'"):
        load_backbone(foreign)


def test_distillation_loss_is_the_documented_mixture():
    generator = torch.Generator().manual_seed(0)
    exits = torch.randn(4, 3, 6, generator=generator)
    final = torch.randn(4, 6, generator=generator)
    labels = torch.tensor([0, 5, 2, 2])
    temperature, weight = 3.0, 0.25
    expected = 0.0
    for e in range(3):
        kl = F.kl_div(
            F.log_softmax(exits[:, e] / temperature, -1), F.log_softmax(final / temperature, -1),
            log_target=True, reduction="batchmean",
        )
        ce = F.cross_entropy(exits[:, e], labels)
        expected += weight * temperature**2 * kl + (1 - weight) * ce
    loss = distillation_loss(exits, final, labels, temperature=temperature, distill_weight=weight)
    assert torch.allclose(loss, torch.as_tensor(expected), atol=1e-5)
    copies = final.unsqueeze(1).expand(4, 3, 6)
    assert float(distillation_loss(copies, final, labels, temperature=2, distill_weight=1)) < 1e-6


def test_exit_training_keeps_the_backbone_frozen_and_teaches_the_exits(splits, backbone_file):
    net = _exit_net(splits, backbone_file)
    backbone_before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    result = train_exits(splits, net, epochs=5, **{**EXIT_SETTINGS, "batch_size": 64})
    assert _same_state(backbone_before, net.backbone.state_dict())  # batch-norm stats included
    assert all(not p.requires_grad for p in net.backbone.parameters())
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < first["loss"]
    assert len(last["accuracy"]) == 2 * 2 + 1  # two taps x two exit types, then the final head
    assert max(last["accuracy"][:-1]) > 0.8


def test_exit_training_is_reproducible_from_the_seed(splits, backbone_file):
    first = _exit_net(splits, backbone_file)
    second = _exit_net(splits, backbone_file)
    other = _exit_net(splits, backbone_file)
    train_exits(splits, first, epochs=1, **EXIT_SETTINGS)
    train_exits(splits, second, epochs=1, **EXIT_SETTINGS)
    train_exits(splits, other, epochs=1, **{**EXIT_SETTINGS, "seed": 6})
    assert _same_state(first.exit_heads.state_dict(), second.exit_heads.state_dict())
    assert not _same_state(first.exit_heads.state_dict(), other.exit_heads.state_dict())


class Interrupted(Exception):
    pass


def _interrupt_after_first_epoch(monkeypatch):
    save = train_module._save_checkpoint

    def save_then_stop(folder, state):
        path = save(folder, state)
        if state["epoch"] == 1:
            raise Interrupted
        return path

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_stop)


def test_interrupted_exit_training_resumes_to_identical_weights(
    splits, backbone_file, tmp_path, monkeypatch
):
    straight = _exit_net(splits, backbone_file)
    expected = train_exits(splits, straight, epochs=2, **EXIT_SETTINGS)

    checkpoints = tmp_path / "checkpoints"
    with monkeypatch.context() as patch:
        _interrupt_after_first_epoch(patch)
        with pytest.raises(Interrupted):
            train_exits(splits, _exit_net(splits, backbone_file), epochs=2,
                        checkpoint_dir=checkpoints, **EXIT_SETTINGS)
    assert [p.name for p in checkpoints.iterdir()] == ["epoch_0001.pt"]

    resumed_net = _exit_net(splits, backbone_file, seed=99)  # other init: the checkpoint wins
    resumed = train_exits(splits, resumed_net, epochs=2, checkpoint_dir=checkpoints,
                          **EXIT_SETTINGS)
    assert _same_state(straight.exit_heads.state_dict(), resumed_net.exit_heads.state_dict())
    assert resumed.history == expected.history
    assert [p.name for p in checkpoints.iterdir()] == ["epoch_0002.pt"]


def test_interrupted_backbone_training_resumes_to_identical_weights(
    splits, tmp_path, monkeypatch
):
    settings = dict(lr=3e-3, batch_size=128, weight_decay=5e-4, seed=1, device="cpu")
    straight = train_backbone(splits, MODEL, epochs=2, **settings)
    with monkeypatch.context() as patch:
        _interrupt_after_first_epoch(patch)
        with pytest.raises(Interrupted):
            train_backbone(splits, MODEL, epochs=2, checkpoint_dir=tmp_path, **settings)
    resumed = train_backbone(splits, MODEL, epochs=2, checkpoint_dir=tmp_path, **settings)
    assert _same_state(straight.model.state_dict(), resumed.model.state_dict())


def test_a_checkpoint_from_other_settings_is_refused(splits, backbone_file, tmp_path):
    net = _exit_net(splits, backbone_file)
    train_exits(splits, net, epochs=1, checkpoint_dir=tmp_path, **EXIT_SETTINGS)
    with pytest.raises(DyceError, match=r"epoch_0001\.pt: field 'lr'"):
        train_exits(splits, _exit_net(splits, backbone_file), epochs=1, checkpoint_dir=tmp_path,
                    **{**EXIT_SETTINGS, "lr": 5e-3})


def test_cli_refuses_mismatched_backbones_and_unknown_models(
    splits, backbone_file, tmp_path, capsys
):
    data = tmp_path / "splits.json"
    assert main(["prepare-data", "--dataset", "digits", "--seed", "0", "--out", str(data)]) == 0
    out = tmp_path / "exits.pt"
    common = ["train-exits", "--data", str(data), "--epochs", "1", "--out", str(out)]
    assert main([*common, "--model", "small_resnet14", "--backbone", str(backbone_file[0])]) == 2
    assert "field 'model'" in capsys.readouterr().err
    assert main([*common, "--model", "resnet_tiny", "--weights", "DEFAULT"]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "unknown model" in error
    assert main(["train-backbone", "--data", str(data), "--model", "nope", "--out",
                 str(tmp_path / "backbone.pt")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["splits.json"]


def test_cli_training_with_a_fixed_thread_count_is_bit_identical_and_recorded(
    splits, backbone_file, tmp_path
):
    data = tmp_path / "splits.json"
    assert main(["prepare-data", "--dataset", "digits", "--seed", "0", "--out", str(data)]) == 0
    payloads = []
    for run in ("a", "b"):
        out = tmp_path / f"exits_{run}.pt"
        assert main(["train-exits", "--data", str(data), "--model", MODEL, "--backbone",
                     str(backbone_file[0]), "--exit-types", EXIT_TYPES, "--epochs", "1",
                     "--cpus", "1", "--device", "cpu", "--out", str(out)]) == 0
        payloads.append(torch.load(out, map_location="cpu", weights_only=True))
    assert _same_state(payloads[0]["exits"], payloads[1]["exits"])
    assert payloads[0]["extra"]["training"]["threads"] == 1
    assert main(["train-exits", "--data", str(data), "--model", MODEL, "--backbone",
                 str(backbone_file[0]), "--cpus", "0", "--out", str(tmp_path / "x.pt")]) == 2
