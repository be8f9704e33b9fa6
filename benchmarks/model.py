"""Model-side benchmark: recording throughput and exit-training time.

Measures (median of ``--repeats`` runs):

- recording throughput (samples/s) of ``dyce.records.recording.record_split`` for ResNet-50 at 224 px
  (random weights, the five default exit types at the automatic taps, ``--resnet-batches``
  batches of 32 synthetic images), Parquet writing included;
- recording throughput of the digits default (small_resnet8, five default exit types, the
  whole val split);
- training time of the digits backbone and of the default exits on digits: the CLI defaults
  (the paper's five exit types) and the workflow's digits model from ``config/config.yaml``.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/model.py [--threads 1] [--repeats 3] [--device cpu]

It prints a Markdown table (and ``--json PATH`` writes the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would distort the timing output

import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from dyce.data.splits import load_split, prepare_splits  # noqa: E402
from dyce.network.models import MultiExitNetwork, build_backbone  # noqa: E402
from dyce.network.training import prepare_exit_network, save_backbone, train_backbone, train_exits  # noqa: E402
from dyce.records.recording import record_split  # noqa: E402

BACKBONE_DEFAULTS = dict(epochs=30, lr=3e-3, batch_size=64, weight_decay=5e-4, seed=0)
EXIT_DEFAULTS = dict(
    epochs=20, lr=1e-2, batch_size=64, weight_decay=1e-4, temperature=1.0, distill_weight=1.0,
    seed=0,
)


class RandomImages(Dataset):
    """``count`` random images ``(3, size, size)`` with labels, as ``(image, label, sample_id)``."""

    def __init__(self, count: int, size: int, num_classes: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(count, 3, size, size, generator=generator)
        self.labels = torch.randint(0, num_classes, (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: int):
        return self.images[item], int(self.labels[item]), item


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _median(times: list[float]) -> float:
    return statistics.median(times)


def bench_resnet50(repeats: int, batches: int, device: str, folder: Path) -> dict:
    torch.manual_seed(0)
    backbone = build_backbone("resnet50", num_classes=1000)
    net = MultiExitNetwork(
        backbone, "auto", None, 1000, input_size=224, model_name="resnet50", device=device
    )
    dataset = RandomImages(32 * batches, 224, 1000)
    record_split(net, RandomImages(32, 224, 1000, seed=1), topk=5, batch_size=32, device=device,
                 out_path=folder / "warmup.parquet", model="resnet50", dataset_name="random",
                 split="val")
    times = [
        _timed(lambda: record_split(
            net, dataset, topk=5, batch_size=32, device=device,
            out_path=folder / "resnet50.parquet", model="resnet50", dataset_name="random",
            split="val",
        ))
        for _ in range(repeats)
    ]
    return {
        "samples": len(dataset), "positions": net.num_positions,
        "exits": (net.num_positions - 1) * len(net.exit_types),
        "seconds": times, "samples_per_s": len(dataset) / _median(times),
    }


def bench_digits(repeats: int, device: str, folder: Path) -> dict:
    splits = prepare_splits("digits", seed=0)
    backbone_times, exit_times, record_times = [], [], []
    net = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = train_backbone(splits, "small_resnet8", device=device, **BACKBONE_DEFAULTS)
        backbone_times.append(time.perf_counter() - start)
        save_backbone(folder / "backbone.pt", result.model, result.spec, result.history)
        net = prepare_exit_network(
            splits, "small_resnet8", backbone_path=folder / "backbone.pt", seed=0
        )
        exit_times.append(_timed(lambda net=net: train_exits(
            splits, net, device=device, **EXIT_DEFAULTS
        )))
    val = load_split(splits, "val")
    for _ in range(repeats):
        record_times.append(_timed(lambda: record_split(
            net, val, topk=1, batch_size=256, device=device,
            out_path=folder / "digits_val.parquet", model="small_resnet8",
            dataset_name="digits", split="val",
        )))
    return {
        "train_samples": len(splits["splits"]["train"]), "val_samples": len(val),
        "exits": (net.num_positions - 1) * len(net.exit_types),
        "backbone_seconds": backbone_times, "exit_seconds": exit_times,
        "record_seconds": record_times, "record_samples_per_s": len(val) / _median(record_times),
    }


def workflow_exit_settings(config_path: Path) -> tuple[str, list[str], dict] | None:
    """(architecture, exit types, exit training flags) of the first digits model in the config."""
    import yaml

    if not config_path.is_file():
        return None
    config = yaml.safe_load(config_path.read_text())
    for name, model in (config.get("models") or {}).items():
        if model.get("dataset") == "digits":
            flags = {**EXIT_DEFAULTS, **(model.get("exit_training") or {})}
            return model.get("architecture", name), list(model["exit_types"]), flags
    return None


def bench_workflow_exits(repeats: int, device: str, folder: Path, config_path: Path) -> dict | None:
    settings = workflow_exit_settings(config_path)
    if settings is None:
        return None
    architecture, exit_types, flags = settings
    splits = prepare_splits("digits", seed=0)
    backbone = train_backbone(splits, architecture, device=device, **BACKBONE_DEFAULTS)
    save_backbone(folder / "workflow_backbone.pt", backbone.model, backbone.spec)
    times = []
    for _ in range(repeats):
        net = prepare_exit_network(
            splits, architecture, backbone_path=folder / "workflow_backbone.pt",
            exit_types=exit_types, seed=0,
        )
        times.append(_timed(lambda net=net: train_exits(splits, net, device=device, **flags)))
    return {"architecture": architecture, "exit_types": exit_types, "flags": flags,
            "exits": (net.num_positions - 1) * len(exit_types), "seconds": times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--resnet-batches", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"),
                        help="workflow config whose digits model is also timed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = {
        "python": platform.python_version(), "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "threads": args.threads, "device": args.device,
        "processor": platform.processor() or platform.machine(),
    }
    if args.device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {"machine": machine, "digits": bench_digits(args.repeats, args.device, folder)}
        workflow = bench_workflow_exits(args.repeats, args.device, folder, args.config)
        if workflow is not None:
            results["workflow_exits"] = workflow
        if not args.skip_resnet:
            results["resnet50"] = bench_resnet50(
                args.repeats, args.resnet_batches, args.device, folder
            )
    digits = results["digits"]
    print(f"machine: {json.dumps(machine)}")
    print("| measurement | median | runs |")
    print("|---|---|---|")
    print(f"| digits backbone training, small_resnet8, {BACKBONE_DEFAULTS['epochs']} epochs, "
          f"{digits['train_samples']} samples | {_median(digits['backbone_seconds']):.1f} s | "
          f"{', '.join(f'{t:.1f}' for t in digits['backbone_seconds'])} |")
    print(f"| digits exit training, {digits['exits']} exits, {EXIT_DEFAULTS['epochs']} epochs "
          f"| {_median(digits['exit_seconds']):.1f} s | "
          f"{', '.join(f'{t:.1f}' for t in digits['exit_seconds'])} |")
    print(f"| digits recording, val ({digits['val_samples']} samples), {digits['exits']} exits "
          f"| {digits['record_samples_per_s']:.0f} samples/s | "
          f"{', '.join(f'{t:.3f} s' for t in digits['record_seconds'])} |")
    if "workflow_exits" in results:
        workflow = results["workflow_exits"]
        print(f"| digits exit training, workflow default ({','.join(workflow['exit_types'])}, "
              f"{workflow['exits']} exits, {workflow['flags']['epochs']} epochs) | "
              f"{_median(workflow['seconds']):.1f} s | "
              f"{', '.join(f'{t:.1f}' for t in workflow['seconds'])} |")
    if "resnet50" in results:
        resnet = results["resnet50"]
        print(f"| ResNet-50 224 px recording, {resnet['exits']} exits, top-5, "
              f"{resnet['samples']} samples | {resnet['samples_per_s']:.1f} samples/s | "
              f"{', '.join(f'{t:.1f} s' for t in resnet['seconds'])} |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
