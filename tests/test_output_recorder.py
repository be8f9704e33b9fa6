"""Seed API ``dyce.utils.OutputRecorder``: both early-exit layouts, torch and numpy inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dyce.errors import DyceError
from dyce.records.format import UNTYPED_KEY, read_records
from dyce.utils import OutputRecorder

NUM_CLASSES, NUM_EARLY, BATCHES = 7, 3, ((5, 0), (4, 1))


def reference_topk(logits: np.ndarray, topk: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy softmax + full sort: ``(preds, confs)`` of ``logits (..., C)``."""
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = probs / probs.sum(axis=-1, keepdims=True)
    order = np.argsort(-probs, axis=-1)[..., :topk]
    return order, np.take_along_axis(probs, order, axis=-1)


def make_batches():
    """Per batch: final logits (B, C), early logits (B, N, C) float64, targets (B,)."""
    batches = []
    for batch, seed in BATCHES:
        rng = np.random.default_rng(seed)
        batches.append((rng.normal(size=(batch, NUM_CLASSES)) * 3,
                        rng.normal(size=(batch, NUM_EARLY, NUM_CLASSES)) * 3,
                        rng.integers(0, NUM_CLASSES, batch)))
    return batches


def expected_records(topk: int):
    """Reference preds/confs ``(N+1, total_B, topk)``: early exits in order, final head last."""
    preds, confs = [], []
    for final, early, _ in make_batches():
        logits = np.concatenate([np.swapaxes(early, 0, 1), final[None]], axis=0)
        batch_preds, batch_confs = reference_topk(logits, topk)
        preds.append(batch_preds)
        confs.append(batch_confs)
    return np.concatenate(preds, axis=1), np.concatenate(confs, axis=1)


@pytest.mark.parametrize("layout", ["BNC", "NBC"])
@pytest.mark.parametrize("topk", [1, 3])
def test_torch_layouts_match_numpy_reference(tmp_path, layout, topk):
    recorder = OutputRecorder(topk=topk)
    for final, early, targets in make_batches():
        ee_out = torch.from_numpy(early if layout == "BNC" else np.swapaxes(early, 0, 1).copy())
        recorder.add_pred(torch.from_numpy(final).float(), ee_out.float())
        recorder.add_label(torch.from_numpy(targets).unsqueeze(-1))  # as in the seed README
    saved = recorder.save(tmp_path / "record.npz", meta_info={"epoch": 3}, split="val")
    back = read_records(tmp_path / "record.npz")  # Parquet whatever the suffix
    preds, confs = expected_records(topk)
    np.testing.assert_array_equal(back.preds, preds)
    np.testing.assert_allclose(back.confs, confs, rtol=1e-5)
    np.testing.assert_array_equal(back.labels, np.concatenate([b[2] for b in make_batches()]))
    np.testing.assert_array_equal(saved.preds, back.preds)
    assert (back.num_positions, back.exit_types, back.num_classes) == (4, ("exit",), NUM_CLASSES)
    assert back.extra == {"meta_info": {"epoch": 3}, UNTYPED_KEY: True} and back.split == "val"


def test_numpy_inputs_match_torch_inputs(tmp_path):
    from_numpy, from_torch = OutputRecorder(topk=2), OutputRecorder(topk=2)
    for final, early, targets in make_batches():
        from_numpy.add_pred(final.astype(np.float32), early.astype(np.float32))
        from_numpy.add_label(targets)
        from_torch.add_pred(torch.tensor(final, dtype=torch.float32),
                            torch.tensor(early, dtype=torch.float32))
        from_torch.add_label(torch.tensor(targets))
    left, right = from_numpy.to_records(), from_torch.to_records()
    np.testing.assert_array_equal(left.preds, right.preds)
    np.testing.assert_allclose(left.confs, right.confs, rtol=1e-6)


def test_equal_exits_and_batch_size_is_ambiguous():
    final, early = torch.randn(4, NUM_CLASSES), torch.randn(4, 4, NUM_CLASSES)
    with pytest.raises(DyceError, match='layout="BNC"') as error:
        OutputRecorder().add_pred(final, early)
    assert error.value.field == "ee_out"
    bnc, nbc = OutputRecorder(layout="BNC"), OutputRecorder()
    bnc.add_pred(final, early)
    nbc.add_pred(final, early.transpose(0, 1), layout="NBC")
    for recorder in (bnc, nbc):
        recorder.add_label(torch.arange(4))
    np.testing.assert_array_equal(bnc.to_records().preds, nbc.to_records().preds)


def test_exit_types_split_early_exits_position_major(tmp_path):
    recorder = OutputRecorder()
    recorder.add_pred(torch.randn(3, 5), torch.randn(3, 4, 5))
    recorder.add_label(torch.tensor([0, 1, 2]))
    records = recorder.save(tmp_path / "r.parquet", exit_types=["small", "big"], model="m")
    assert (records.num_positions, records.num_exit_types, records.num_exits) == (3, 2, 5)
    with pytest.raises(DyceError) as error:
        recorder.save(tmp_path / "bad.parquet", exit_types=["a", "b", "c"])
    assert error.value.field == "exit_types" and not (tmp_path / "bad.parquet").exists()


def test_inconsistent_inputs_are_refused(tmp_path):
    recorder = OutputRecorder()
    with pytest.raises(DyceError) as error:
        recorder.add_pred(torch.randn(3, 5), torch.randn(2, 4, 5))
    assert error.value.field == "ee_out"
    recorder.add_pred(torch.randn(3, 5), torch.randn(3, 4, 5))
    with pytest.raises(DyceError):
        recorder.add_pred(torch.randn(3, 5), torch.randn(3, 2, 5))
    recorder.add_label(torch.tensor([0, 1]))
    with pytest.raises(DyceError) as error:
        recorder.save(tmp_path / "r.parquet")
    assert error.value.field == "label" and not (tmp_path / "r.parquet").exists()
    with pytest.raises(DyceError) as error:
        recorder.save(tmp_path / "r.parquet", meta_info={"x": object()})
    assert error.value.field == "meta_info"
    with pytest.raises(DyceError):
        OutputRecorder(layout="CBN")


def test_importing_records_modules_does_not_import_torch():
    code = "import sys, dyce.utils, dyce.records.npz; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "False"
