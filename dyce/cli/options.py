"""Command-line options shared by several ``dyce`` subcommands.

Not a command module (not in ``dyce.cli.COMMAND_MODULES``): the command modules call these
helpers so that an option shared by several subcommands is spelled, defaulted and documented
in one place.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: Splits that ``record`` and ``cache-features`` pass over.
RECORD_SPLITS = ("train", "search", "calib", "val")

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N"
MACS_INFO_HELP = "MACs of the backbone and exits (seed JSON format)"


def add_out(parser: argparse.ArgumentParser, what: str) -> None:
    """Required ``--out`` path, documented as "``what`` to write"."""
    parser.add_argument("--out", type=Path, required=True, help=f"{what} to write")


def add_splits_and_model(parser: argparse.ArgumentParser) -> None:
    """Required ``--data SPLITS.json`` and ``--model NAME`` of the training commands."""
    parser.add_argument("--data", type=Path, required=True, help="SPLITS.json")
    parser.add_argument("--model", required=True, help="backbone name (see dyce.network.models)")


def add_batch_size(parser: argparse.ArgumentParser, default: int) -> None:
    """``--batch-size`` (samples per batch)."""
    parser.add_argument("--batch-size", type=int, default=default, help=f"(default {default})")


def add_device(parser: argparse.ArgumentParser, help: str = DEVICE_HELP) -> None:
    """``--device`` (default ``auto``)."""
    parser.add_argument("--device", default="auto", help=help)


WORKERS_HELP = ("data-loading worker processes, or auto (default): none on the CPU, one less "
                "than --cpus on CUDA")


def add_workers(parser: argparse.ArgumentParser, help: str = WORKERS_HELP) -> None:
    """``--workers`` (processes or ``auto``, see dyce.network.device) and ``--cpus`` (the job's CPUs);
    read them with :func:`job_workers`."""
    parser.add_argument("--workers", default="auto", help=help)
    parser.add_argument("--cpus", type=int, default=None,
                        help="CPUs of this job (default: all this process may use): torch "
                        "threads, and the workers of --workers auto on CUDA; CPU results are "
                        "bit-identical only for the same seed and thread count")


def job_workers(args: argparse.Namespace) -> int:
    """Apply ``--cpus`` (torch threads) and resolve ``--workers`` for ``--device``."""
    import torch

    from dyce.network.device import loader_workers, resolve_device

    if args.cpus is not None:
        if args.cpus < 1:
            from dyce.errors import DyceError

            raise DyceError(f"must be at least 1, got {args.cpus}", field="cpus")
        torch.set_num_threads(args.cpus)
    return loader_workers(args.workers, resolve_device(args.device), args.cpus)


def add_amp(parser: argparse.ArgumentParser) -> None:
    """``--amp {off,bf16,fp16}``: mixed precision of the network (see dyce.network.device)."""
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off",
                        help="mixed precision: off (default), bf16 or fp16 autocast on CUDA; "
                        "on the CPU bf16 autocast, fp16 ignored")


def add_shard(parser: argparse.ArgumentParser) -> None:
    """``--shard i/K``: only the i-th of K batch-aligned parts of the split."""
    parser.add_argument("--shard", default=None, metavar="i/K",
                        help="process only shard i of K (1-based) of the split; join the "
                        "shards' outputs with the matching concat command")


def add_training_flags(parser: argparse.ArgumentParser, *, epochs: int, lr: float,
                       weight_decay: float) -> None:
    """The optimisation flags of ``train-backbone`` and ``train-exits`` (read by
    :func:`training_settings`)."""
    parser.add_argument("--epochs", type=int, default=epochs, help=f"(default {epochs})")
    parser.add_argument("--lr", type=float, default=lr,
                        help=f"peak AdamW learning rate, cosine-annealed per step (default {lr})")
    add_batch_size(parser, 64)
    parser.add_argument("--weight-decay", type=float, default=weight_decay,
                        help=f"AdamW weight decay (default {weight_decay})")
    parser.add_argument("--seed", type=int, default=0, help="initialisation, shuffling, "
                        "augmentation (default 0)")
    add_device(parser)
    add_workers(parser)
    add_amp(parser)
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="write a checkpoint after every epoch here and resume from it")


def training_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``dyce.network.training.train_backbone``/``train_exits`` that
    :func:`add_training_flags` defines."""
    return {
        "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
        "weight_decay": args.weight_decay, "seed": args.seed, "device": args.device,
        "checkpoint_dir": args.checkpoint_dir, "num_workers": job_workers(args), "amp": args.amp,
    }


def add_macs_info(parser: argparse.ArgumentParser) -> None:
    """Required ``--macs-info MACS.json`` of the table commands (a string path)."""
    parser.add_argument("--macs-info", required=True, metavar="MACS.json", help=MACS_INFO_HELP)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` (sets ``progress`` false)."""
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")


def warn_if_chance_level(command: str, records: Any) -> list[str]:
    """Print (and return, for a result table's metadata) the near-chance warning of
    ``records`` (:func:`dyce.report.tables.chance_level_warning`)."""
    import sys

    from dyce.report.tables import chance_level_warning

    warning = chance_level_warning(records)
    if warning is None:
        return []
    print(f"dyce {command}: WARNING: {warning}", file=sys.stderr)
    return [warning]


def print_split_warnings(command: str, splits: dict) -> None:
    """Repeat the warnings ``prepare-data`` stored in SPLITS.json (e.g. an implied image size)."""
    import sys

    for warning in splits.get("warnings") or []:
        print(f"dyce {command}: WARNING: {warning}", file=sys.stderr)
