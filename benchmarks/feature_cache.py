"""Exit training from a feature cache against exit training through the backbone.

ResNet-18 (torchvision, one input channel) on digits upsampled to 64 px: the backbone is trained
first (``--backbone-epochs``, not part of the comparison), then the exit heads (the workflow's
digits exit types at the automatic taps) are trained for ``--epochs`` epochs twice from the same
initial weights and seed:

- *network*: every batch runs the frozen backbone (``dyce.network.training.train_exits``);
- *cache*: one backbone pass over the train split writes the pooled features
  (``dyce.network.features.cache_features``, float32 and float16), then the heads train on the cache
  alone.

Printed: wall times (the cache time includes its backbone pass), the speed-up, each exit's
validation accuracy both ways and the largest difference in points, and how far records of the
train split made from the cache are from records made through the network with the same heads.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/feature_cache.py [--threads 2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would distort the timing output

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dyce.data.splits import load_split, prepare_splits  # noqa: E402
from dyce.network.features import cache_features  # noqa: E402
from dyce.network.training import (  # noqa: E402
    prepare_exit_network,
    save_backbone,
    train_backbone,
    train_exits,
)
from dyce.records.format import read_records  # noqa: E402
from dyce.records.recording import record_features, record_split  # noqa: E402

EXIT_TYPES = ["mlp1x1000", "mlp2x100", "mlp3x100"]


def exit_accuracies(path: Path) -> np.ndarray:
    """Top-1 accuracy (0..1) of every exit, final head last, from a records file."""
    return read_records(path).correct.mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10, help="exit-training epochs")
    parser.add_argument("--backbone-epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="dyce-feature-cache-"))
    splits = prepare_splits("digits", seed=0, image_size=args.image_size)
    start = time.perf_counter()
    backbone = train_backbone(splits, "resnet18", epochs=args.backbone_epochs, lr=3e-3,
                              batch_size=args.batch_size, weight_decay=5e-4, seed=0, device="cpu")
    backbone_seconds = time.perf_counter() - start
    save_backbone(folder / "backbone.pt", backbone.model, backbone.spec)
    initial = prepare_exit_network(splits, "resnet18", backbone_path=folder / "backbone.pt",
                                   exit_types=EXIT_TYPES, seed=0)
    settings = dict(epochs=args.epochs, lr=1e-2, batch_size=args.batch_size, weight_decay=1e-4,
                    temperature=1.0, distill_weight=1.0, seed=0, device="cpu")

    through_network = copy.deepcopy(initial)
    start = time.perf_counter()
    train_exits(splits, through_network, **settings)
    network_seconds = time.perf_counter() - start

    caches = {}
    for dtype in ("float32", "float16"):
        net = copy.deepcopy(initial)
        folder_of_cache = folder / f"train_features_{dtype}"
        start = time.perf_counter()
        cache_features(net, load_split(splits, "train"), out_dir=folder_of_cache,
                       batch_size=256, model="resnet18", dataset_name="digits", split="train",
                       device="cpu", dtype=dtype)
        pass_seconds = time.perf_counter() - start
        train_exits(splits, net, features=folder_of_cache, **settings)
        caches[dtype] = (net, folder_of_cache, pass_seconds, time.perf_counter() - start)

    def val_accuracy(net, name: str) -> np.ndarray:
        path = folder / f"val_{name}.parquet"
        record_split(net, load_split(splits, "val"), topk=1, batch_size=256, device="cpu",
                     out_path=path, model="resnet18", dataset_name="digits", split="val")
        return exit_accuracies(path)

    reference = val_accuracy(through_network, "network")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {args.threads} threads")
    print(f"resnet18 on digits at {args.image_size} px: {len(splits['splits']['train'])} train, "
          f"{len(splits['splits']['val'])} val samples; {initial.num_positions - 1} taps x "
          f"{len(EXIT_TYPES)} exit types; backbone trained in {backbone_seconds:.1f} s; "
          f"final head {100 * reference[-1]:.1f} % val; exits through the backbone "
          f"{100 * reference[:-1].min():.1f}..{100 * reference[:-1].max():.1f} % val")
    print()
    print(f"| exit training, {args.epochs} epochs | wall s | speed-up | largest (mean) val "
          "accuracy difference of an exit, points | train records vs network: max conf "
          "diff, top-1 agreement |")
    print("|---|---|---|---|---|")
    print(f"| through the backbone | {network_seconds:.1f} | 1.0x | - | - |")
    for dtype, (net, cache, pass_seconds, seconds) in caches.items():
        diff = 100 * np.abs(val_accuracy(net, dtype) - reference)[:-1]
        record_split(net, load_split(splits, "train"), topk=1, batch_size=256, device="cpu",
                     out_path=folder / f"train_network_{dtype}.parquet", model="resnet18",
                     dataset_name="digits", split="train")
        record_features(net, cache, topk=1, batch_size=256, device="cpu",
                        out_path=folder / f"train_cache_{dtype}.parquet", model="resnet18")
        a = read_records(folder / f"train_network_{dtype}.parquet")
        b = read_records(folder / f"train_cache_{dtype}.parquet")
        print(f"| {dtype} cache (pass {pass_seconds:.1f} s + heads {seconds - pass_seconds:.1f} s)"
              f" | {seconds:.1f} | {network_seconds / seconds:.1f}x | {diff.max():.2f} "
              f"({diff.mean():.2f}) | {np.abs(a.confs - b.confs).max():.1e}, "
              f"{100 * (a.top1_preds == b.top1_preds).mean():.2f} % |")

if __name__ == "__main__":
    main()
