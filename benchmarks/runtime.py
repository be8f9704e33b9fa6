"""Benchmark: wall time of real early-exit inference at several budgets vs the original model.

For each model (random weights; MACs and timing do not depend on the weights) the script records
the exits on a fixed set of inputs, builds global-threshold configurations that reach given
relative-MACs targets on those inputs, packs a bundle, and times per sample, at batch sizes 1
and 64:

- ``original``: ``backbone(x)`` then softmax/top-1 (what a plain deployment computes);
- ``runtime 100 %``: the runtime with no exit enabled (its plain-backbone path) -> overhead;
- ``runtime <target>``: the runtime with the configuration reaching that relative MACs.

Reported: achieved relative MACs on the inputs, wall and CPU time per sample (medians of
``--repeats`` passes, settings interleaved so machine load affects all alike), the fastest pass's
CPU time, the time relative to the original (from the fastest passes: load from other processes
only ever adds time) and the share of the MACs saving that became time saving,
``(1 - time/original) / (1 - relative MACs)``. With one intra-op thread (the default) CPU time
is what an idle machine's wall time would be, and is less disturbed by other processes.

    PYTHONPATH=. .venv/bin/python benchmarks/runtime.py [--models digits,resnet50] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from dyce.evaluate.exact import evaluate_config
from dyce.evaluate.strategies import global_threshold
from dyce.macs.counting import macs_info_for
from dyce.network.models import MultiExitNetwork, build_backbone, save_exits_checkpoint
from dyce.records.format import ExitRecords
from dyce.records.recording import exit_topk
from dyce.runtime.inference import EarlyExitRuntime, build_bundle

MODELS = {
    # name: (architecture, input size, channels, classes, exit types,
    #        samples timed at batch size 1, samples recorded and timed at batch size 64)
    "digits": ("small_resnet8", 8, 1, 10, ["mlp1x100", "mlp2x100"], 256, 1024),
    "resnet50": ("resnet50", 224, 3, 1000, ["mlp1x1000"], 8, 64),
}
TARGETS = (0.25, 0.5, 0.75)


def _inputs(name: str, count: int, size: int, channels: int) -> torch.Tensor:
    if name == "digits":
        from dyce.data.splits import DigitsPool

        return DigitsPool(size).images[:count].clone()
    generator = torch.Generator().manual_seed(0)
    return torch.randn(count, channels, size, size, generator=generator)


@torch.inference_mode()
def _records(net: MultiExitNetwork, images: torch.Tensor, batch: int) -> ExitRecords:
    preds, confs = [], []
    for start in range(0, len(images), batch):
        final, exits = net(images[start: start + batch])
        p, c = exit_topk(final, exits, 1)
        preds.append(p.numpy())
        confs.append(c.numpy())
    preds_all, confs_all = np.concatenate(preds, axis=1), np.concatenate(confs, axis=1)
    labels = preds_all[-1, :, 0].astype(np.int64)  # final head = "truth": relative acc is agreement
    return ExitRecords(labels=labels, preds=preds_all, confs=confs_all,
                       exit_types=tuple(net.exit_types), num_positions=net.num_positions,
                       num_classes=net.num_classes)


def _front(records: ExitRecords, macs: dict) -> pl.DataFrame:
    """For each target, the global-threshold configuration whose relative MACs is nearest."""
    confs = np.unique(records.top1_confs[:-1])
    thresholds = (confs[:-1] + confs[1:]) / 2
    grid = thresholds[np.linspace(0, len(thresholds) - 1, 400).astype(int)]
    results = global_threshold(records, macs, exit_types=[0], thresholds=grid, progress=False)
    rows = []
    for target in TARGETS:
        best = min(results, key=lambda r: abs(r.evaluation.relative_macs - target))
        rows.append({"method": "global_threshold", "parameter_name": "threshold",
                     "parameter": best.parameter, "config": json.dumps(best.config),
                     "relative_macs": best.evaluation.relative_macs,
                     "relative_acc": best.evaluation.relative_acc})
    return pl.DataFrame(rows)


def _time_per_sample(run, images: torch.Tensor, batch: int) -> tuple[float, float]:
    """Wall and CPU seconds per sample of one pass over ``images``.

    With one intra-op thread all work happens in this process, so its CPU time is the wall time
    an idle machine would show; on a shared machine it is the stable measure.
    """
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(images), batch):
        run(images[first: first + batch])
    count = len(images)
    return (time.perf_counter() - start_wall) / count, (time.process_time() - start_cpu) / count


def bench_model(name: str, repeats: int, folder: Path) -> list[dict]:
    architecture, size, channels, classes, exit_types, batch1_samples, samples = MODELS[name]
    torch.manual_seed(0)
    backbone = build_backbone(architecture, num_classes=classes, in_channels=channels,
                              input_size=size)
    net = MultiExitNetwork(backbone, "auto", exit_types, classes, input_size=size,
                           in_channels=channels, model_name=architecture, device="cpu")
    macs = macs_info_for(net)
    images = _inputs(name, samples, size, channels)
    records = _records(net, images, 64)
    front = _front(records, macs)
    front.write_parquet(folder / f"{name}_front.parquet")
    (folder / f"{name}_macs.json").write_text(json.dumps(macs))
    save_exits_checkpoint(folder / f"{name}_exits.pt", net)
    build_bundle(folder / f"{name}_exits.pt", folder / f"{name}_front.parquet",
                 folder / f"{name}_macs.json", folder / f"{name}_bundle.pt")
    runtime = EarlyExitRuntime.load(folder / f"{name}_bundle.pt", device="cpu")
    plain = backbone.eval()

    @torch.inference_mode()
    def original(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(plain(x).float(), dim=-1).topk(1, dim=-1)

    settings: list[tuple[str, object, float]] = [("original", None, 1.0)]
    empty = [[-1, 1.0]] * (runtime.num_positions - 1)
    settings.append(("runtime 100 %", empty, 1.0))
    for index, row in enumerate(front.iter_rows(named=True)):
        achieved = evaluate_config(records, macs, json.loads(row["config"])).relative_macs
        settings.append((f"runtime {TARGETS[index]:.0%}", index, achieved))
    results = []
    for batch in (1, 64):
        subset = images[:batch1_samples] if batch == 1 else images
        walls: dict[str, list[float]] = {label: [] for label, _, _ in settings}
        cpus: dict[str, list[float]] = {label: [] for label, _, _ in settings}
        for _label, config, _ in settings:  # warm-up
            if config is not None:
                runtime.set_config(config)
            _time_per_sample(original if config is None else runtime, subset[:batch], batch)
        for _ in range(repeats):
            for label, config, _ in settings:
                if config is not None:
                    runtime.set_config(config)
                run = original if config is None else runtime
                wall, cpu = _time_per_sample(run, subset, batch)
                walls[label].append(wall)
                cpus[label].append(cpu)
        base = min(cpus["original"])
        for label, _, rel_macs in settings:
            per_sample = min(cpus[label])
            time_saving = 1 - per_sample / base
            macs_saving = 1 - rel_macs
            results.append({
                "model": name, "batch": batch, "setting": label, "relative_macs": rel_macs,
                "wall_ms_per_sample": statistics.median(walls[label]) * 1e3,
                "cpu_ms_per_sample": statistics.median(cpus[label]) * 1e3,
                "min_cpu_ms_per_sample": per_sample * 1e3, "relative_time": per_sample / base,
                "time_share_of_macs_saving": time_saving / macs_saving if macs_saving > 0.01
                else None,
            })
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,resnet50")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            rows += bench_model(name, args.repeats, Path(folder))
    print("| model | batch | setting | relative MACs | wall ms / sample | CPU ms / sample "
          "| min CPU ms / sample | relative time | share of MACs saving realised |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = "" if r["time_share_of_macs_saving"] is None else \
            f"{r['time_share_of_macs_saving']:.0%}"
        print(f"| {r['model']} | {r['batch']} | {r['setting']} | {r['relative_macs']:.3f} | "
              f"{r['wall_ms_per_sample']:.3f} | {r['cpu_ms_per_sample']:.3f} | "
              f"{r['min_cpu_ms_per_sample']:.3f} | "
              f"{r['relative_time']:.3f} | {share} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
