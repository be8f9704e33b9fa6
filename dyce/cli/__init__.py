"""The ``dyce`` command line.

One module per command group, named after it and listed in :data:`COMMAND_MODULES` in pipeline
order (the order of ``dyce --help``), contributes subcommands through ``register(subparsers)``;
each subcommand sets ``func`` (called with the parsed namespace, returns an exit status or None).
Command modules import their heavy dependencies (torch, polars) inside ``func`` so that
``dyce --help`` and the torch-free commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from dyce import __version__
from dyce.errors import DyceError
from dyce.io import TERMINATED_STATUS, Terminated, refuse_overwriting_inputs

#: Options that name files a command writes; every other path-like argument is an input.
OUTPUT_OPTIONS = ("out", "csv")

#: Command modules of ``dyce.cli`` in pipeline order.
COMMAND_MODULES = (
    "data", "train", "record", "macs", "search", "select", "evaluate", "report", "runtime",
    "workflow",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with the subcommands of every module in :data:`COMMAND_MODULES`."""
    parser = argparse.ArgumentParser(
        prog="dyce",
        description="Dynamic Configurable Exiting: exit records, MACs, configuration search, "
        "evaluation and early-exit inference.",
    )
    parser.add_argument("--version", action="version", version=f"dyce {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dyce`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_outputs_not_inputs(args)
        status = args.func(args)
    except DyceError as error:
        print(f"dyce {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # read-only folder, disk full, a folder where a file goes, …
        print(f"dyce {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dyce {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"dyce {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return TERMINATED_STATUS
    return int(status or 0)


def check_outputs_not_inputs(args: argparse.Namespace) -> None:
    """Refuse an output path (``--out``, ``--csv``) that is one of the command's input files."""
    inputs: list[object] = []
    for name, value in vars(args).items():
        if name in OUTPUT_OPTIONS or name == "func":
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, os.PathLike)):
                inputs.append(item)
    for name in OUTPUT_OPTIONS:
        out = getattr(args, name, None)
        if out is not None:
            refuse_overwriting_inputs(out, inputs, option=name)


def describe_os_error(error: OSError) -> str:
    """One line naming the path(s) and the cause of an operating-system error."""
    cause = error.strerror or str(error) or type(error).__name__
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {cause}" if paths else cause


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
