"""Mixed precision and data-loading workers: the CPU behaviour of the GPU-ready paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dyce.errors import DyceError
from dyce.network.device import autocast, check_amp, grad_scaler, loader_workers, pin_memory

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_amp_choices_are_checked():
    for amp in ("off", "bf16", "fp16"):
        assert check_amp(amp) == amp
    with pytest.raises(DyceError, match="field 'amp'"):
        check_amp("fp8")


def test_cpu_autocast_runs_bf16_only_when_asked():
    weight, x = torch.randn(8, 8), torch.randn(4, 8)
    with autocast(CPU, "off"):
        assert (x @ weight).dtype == torch.float32
    with autocast(CPU, "bf16"):
        assert (x @ weight).dtype == torch.bfloat16
    with pytest.warns(UserWarning, match="not used on the CPU"), autocast(CPU, "fp16"):
        assert (x @ weight).dtype == torch.float32


def test_loss_scaling_only_for_fp16_on_cuda():
    assert not grad_scaler(CPU, "fp16").is_enabled()
    assert not grad_scaler(CPU, "bf16").is_enabled()


def test_workers_follow_the_jobs_cpus_on_cuda_and_stay_in_process_on_the_cpu():
    assert loader_workers("auto", CPU, cpus=16) == 0
    assert loader_workers("auto", CUDA, cpus=16) == 15
    assert loader_workers("auto", CUDA, cpus=1) == 0
    assert loader_workers("3", CPU) == 3 and loader_workers(2, CUDA) == 2
    assert pin_memory(CUDA) and not pin_memory(CPU)
    for bad in ("-1", "many"):
        with pytest.raises(DyceError, match="field 'workers'"):
            loader_workers(bad, CPU)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """Digits splits and a small_resnet8 exit network with random weights."""
    from dyce.data.splits import prepare_splits
    from dyce.network.training import prepare_exit_network

    splits = prepare_splits("digits", seed=0)
    return splits, prepare_exit_network(splits, "small_resnet8", exit_types="mlp1x1000,mlp2x32")


def test_bf16_records_stay_close_to_float32_and_fp16_is_float32_on_the_cpu(untrained, tmp_path):
    from dyce.data.splits import load_split
    from dyce.records.format import read_records
    from dyce.records.recording import record_split

    splits, net = untrained
    records = {}
    for amp in ("off", "bf16", "fp16"):
        path = tmp_path / f"{amp}.parquet"
        record_split(net, load_split(splits, "val"), topk=1, batch_size=128, device="cpu",
                     out_path=path, model="small_resnet8", dataset_name="digits", split="val",
                     amp=amp)
        records[amp] = read_records(path)
    np.testing.assert_array_equal(records["fp16"].confs, records["off"].confs)
    assert records["bf16"].confs.dtype == np.float32
    assert not np.array_equal(records["bf16"].confs, records["off"].confs)
    np.testing.assert_allclose(records["bf16"].confs, records["off"].confs, atol=0.05)


def test_bf16_exit_training_runs_on_the_cpu_and_its_checkpoint_keeps_the_setting(
    untrained, tmp_path
):
    import copy

    from dyce.network.training import train_exits

    splits, net = untrained
    settings = dict(epochs=1, lr=1e-2, batch_size=256, weight_decay=0.0, temperature=1.0,
                    distill_weight=1.0, seed=0, device="cpu", checkpoint_dir=tmp_path)
    result = train_exits(splits, copy.deepcopy(net), amp="bf16", **settings)
    assert np.isfinite(result.history[0]["loss"])
    for parameter in result.model.exit_heads.parameters():
        assert parameter.dtype == torch.float32  # autocast keeps float32 master weights
    with pytest.raises(DyceError, match="field 'amp'"):
        train_exits(splits, copy.deepcopy(net), amp="off", **settings)
