"""``dyce bundle`` (pack a network and its front for inference) and ``dyce predict``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dyce.cli.options import add_batch_size, add_device, add_out
from dyce.errors import DyceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bundle`` and ``predict``."""
    _register_bundle(subparsers)
    _register_predict(subparsers)


# --------------------------------------------------------------------------- bundle


def _register_bundle(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bundle", help="pack backbone, used exit heads, MACs table and front into BUNDLE.pt",
        description="Write one file for early-exit inference: the network spec and backbone "
        "weights, only the exit heads that a front configuration uses, the MACs table and the "
        "front (config, method, lambda, validation relative MACs and accuracy per row). "
        "Loaded with torch.load(weights_only=True).",
    )
    parser.add_argument("--exits", type=Path, required=True, help="EXITS.pt (dyce train-exits)")
    parser.add_argument("--front", type=Path, nargs="+", required=True,
                        help="FRONT.parquet (dyce front, or an evaluated table); several allowed")
    parser.add_argument("--macs-info", type=Path, required=True, help="MACS.json of the network")
    parser.add_argument("--searched", type=Path, nargs="+", default=[],
                        help="EVAL.parquet (dyce evaluate) of every searched configuration, so "
                        "that predict --lambda runs the configuration searched for that λ; "
                        "without it --lambda accepts only the front's λ values")
    parser.add_argument("--calibration-records", type=Path, default=None, metavar="CALIB",
                        help="calibration records (the calib split) to store in the bundle: "
                        "the default of 'dyce predict --risk'")
    parser.add_argument("--search-records", type=Path, default=None, metavar="SEARCH",
                        help="search records: each front configuration's loss there orders the "
                        "tests of 'dyce predict --risk' (as in dyce select)")
    add_out(parser, "BUNDLE.pt")
    parser.set_defaults(func=_bundle)


def _bundle(args: argparse.Namespace) -> int:
    from dyce.runtime.inference import build_bundle

    summary = build_bundle(args.exits, args.front, args.macs_info, args.out,
                           searched_tables=args.searched,
                           calibration_records=args.calibration_records,
                           search_records=args.search_records)
    print(f"wrote {args.out}: {summary['configurations']} front configurations, "
          f"{summary['searched']} searched, "
          f"{summary['exit_heads']} of {summary['exit_heads_total']} exit heads kept")
    return 0


# --------------------------------------------------------------------------- predict


def _register_predict(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="early-exit inference with a bundle at a budget, lambda or risk level",
        description="Classify a data split or a folder of images with real early exiting. "
        "Prints the configuration used, accuracy (when labels are known), mean relative MACs "
        "and the fraction of samples leaving at each position.",
    )
    parser.add_argument("bundle", type=Path, help="BUNDLE.pt (dyce bundle)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="SPLITS.json (dyce prepare-data)")
    source.add_argument("--images", type=Path,
                        help=f"folder of images ({', '.join(IMAGE_SUFFIXES)}), searched recursively")
    parser.add_argument("--split", default="val", help="split of --data (default val)")
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--budget", type=float,
                        help="relative MACs budget: the most accurate front configuration whose "
                        "validation relative MACs is at most this (1.0 or more = the original "
                        "model)")
    choice.add_argument("--lambda", dest="lambda_value", type=float,
                        help="the configuration searched with this lambda (the nearest searched "
                        "one when the bundle keeps its searched table, else a front row's λ)")
    choice.add_argument("--risk", nargs=2, type=float, metavar=("TOLERANCE", "DELTA"),
                        help="cheapest front configuration whose relative accuracy drop vs the "
                        "original model is at most TOLERANCE with probability 1-DELTA, tested "
                        "on the bundle's calibration records (as dyce select does)")
    choice.add_argument("--config-index", type=int, help="row of the bundle's front")
    parser.add_argument("--method", default=None,
                        help="with --lambda: the search method when the front has several")
    parser.add_argument("--calibration-records", type=Path,
                        help="RECORDS.parquet of held-out calibration samples for --risk instead "
                        "of the bundle's; for the guarantee, samples used neither to train, "
                        "search nor validate")
    parser.add_argument("--bound", choices=("clopper-pearson", "hoeffding-bentkus"),
                        default="clopper-pearson", help="upper confidence bound for --risk")
    parser.add_argument("--dataset", default=None,
                        help="with --images: preprocessing of this dataset (digits, cifar10, "
                        "cifar100, imagefolder); default: the bundle's")
    add_batch_size(parser, 64)
    add_device(parser, help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--out", type=Path, default=None,
                        help="PREDICTIONS.parquet: one row per sample")
    parser.set_defaults(func=_predict)


def _choose(runtime, args: argparse.Namespace) -> str:
    """Activate the configuration the arguments ask for; returns a line describing it."""
    if args.risk is not None:
        tolerance, delta = args.risk
        selection = runtime.set_risk(tolerance, delta, args.calibration_records, bound=args.bound)
        return selection.summary(runtime.current.method)
    if args.budget is not None:
        runtime.set_budget(args.budget)
    elif args.lambda_value is not None:
        runtime.set_lambda(args.lambda_value, method=args.method)
    else:
        runtime.set_config(args.config_index)
    return ""


def _describe(entry) -> str:
    parts = [f"#{entry.index}" if entry.index is not None else "", entry.method]
    if entry.lambda_value is not None:
        parts.append(f"lambda={entry.lambda_value:g}")
    elif entry.parameter_name:
        parts.append(f"{entry.parameter_name}={entry.parameter:g}")
    parts.append(f"(validation: relative MACs {entry.relative_macs:.4f}, relative accuracy "
                 f"{entry.relative_acc:.4f})")
    return " ".join(p for p in parts if p)


def _image_batches(folder: Path, runtime, dataset: str | None, batch_size: int):
    """Yield ``(images, None, paths)`` batches of the image files under ``folder``."""
    import torch
    from PIL import Image, UnidentifiedImageError

    from dyce.data.splits import eval_transform
    from dyce.network.timm_backbones import model_transform

    if not folder.is_dir():
        raise DyceError("not a folder", path=folder, field="images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DyceError(f"no image files ({', '.join(IMAGE_SUFFIXES)})", path=folder,
                        field="images")
    if dataset is None:
        raise DyceError("the bundle names no dataset; give --dataset for the preprocessing",
                        field="dataset")
    transform = model_transform(
        runtime.backbone, {"dataset": dataset, "image_size": list(runtime.input_size)}
    ) or eval_transform(dataset, runtime.input_size, runtime.in_channels)
    mode = "L" if runtime.in_channels == 1 else "RGB"
    for start in range(0, len(files), batch_size):
        chunk = files[start: start + batch_size]
        images = []
        for path in chunk:
            try:
                with Image.open(path) as image:
                    images.append(transform(image.convert(mode)))
            except (UnidentifiedImageError, OSError) as error:
                raise DyceError(f"cannot read image ({error})", path=path) from None
        yield torch.stack(images), None, [str(p) for p in chunk]


def _split_batches(splits: Path, split: str, batch_size: int, runtime):
    """Yield ``(images, labels, sample_ids)`` batches of one split of SPLITS.json."""
    from torch.utils.data import DataLoader

    from dyce.data.splits import load_split, load_splits
    from dyce.network.timm_backbones import model_transform

    info = load_splits(splits)
    dataset = load_split(info, split, transform=model_transform(runtime.backbone, info))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for images, labels, sample_ids in loader:
        yield images, labels.numpy(), sample_ids.numpy()


def _predict(args: argparse.Namespace) -> int:
    import numpy as np
    import polars as pl

    from dyce.io import atomic_path
    from dyce.runtime.inference import EarlyExitRuntime, prediction_summary

    if args.batch_size < 1:
        raise DyceError(f"must be at least 1, got {args.batch_size}", field="batch_size")
    runtime = EarlyExitRuntime.load(args.bundle, device=args.device)
    risk_line = _choose(runtime, args)
    if args.data is not None:
        batches = _split_batches(args.data, args.split, args.batch_size, runtime)
    else:
        batches = _image_batches(args.images, runtime, args.dataset or runtime.dataset,
                                 args.batch_size)
    columns: dict[str, list] = {"prediction": [], "exit_position": [], "confidence": [],
                                "macs": [], "label": [], "key": []}
    started = time.perf_counter()
    inference = 0.0  # seconds inside the runtime only (no data loading or decoding)
    for images, labels, keys in batches:
        batch_started = time.perf_counter()
        out = runtime(images)
        inference += time.perf_counter() - batch_started
        columns["prediction"].append(out.predictions.numpy())
        columns["exit_position"].append(out.exit_position.numpy())
        columns["confidence"].append(out.confidence.numpy())
        columns["macs"].append(out.macs.numpy())
        columns["key"].append(np.asarray(keys))
        if labels is not None:
            columns["label"].append(labels)
    elapsed = time.perf_counter() - started
    arrays = {name: np.concatenate(parts) for name, parts in columns.items() if parts}
    labels = arrays.get("label")
    summary = prediction_summary(arrays["exit_position"], arrays["macs"], runtime.macs.ori_macs,
                                 runtime.num_positions, arrays["prediction"], labels)
    if risk_line:
        print(risk_line)
    print(f"configuration: {_describe(runtime.current)}")
    print(f"samples: {summary['samples']} in {elapsed:.2f} s with data loading "
          f"({summary['samples'] / max(elapsed, 1e-9):.1f} samples/s); inference alone "
          f"{inference:.2f} s ({summary['samples'] / max(inference, 1e-9):.1f} samples/s on "
          f"{runtime.device})")
    if summary["accuracy"] is not None:
        print(f"accuracy: {summary['accuracy']:.4f}")
    print(f"mean relative MACs: {summary['relative_macs']:.4f}")
    names = [*runtime.taps, "final"]
    ratios = ", ".join(f"{name} {ratio:.3f}" for name, ratio in
                       zip(names, summary["exit_ratio"], strict=True))
    print(f"exit ratios: {ratios}")
    if args.out is not None:
        table = {("sample_id" if args.data is not None else "path"): arrays["key"]}
        if labels is not None:
            table["label"] = labels
        table.update({
            "prediction": arrays["prediction"], "exit_position": arrays["exit_position"],
            "confidence": arrays["confidence"], "macs": arrays["macs"],
            "relative_macs": arrays["macs"] / runtime.macs.ori_macs,
        })
        with atomic_path(args.out) as tmp:
            pl.DataFrame(table).write_parquet(tmp)
        print(f"wrote {args.out}")
    return 0
