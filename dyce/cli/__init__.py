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
import sys
from collections.abc import Sequence

from dyce import __version__
from dyce.errors import DyceError

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
        status = args.func(args)
    except DyceError as error:
        print(f"dyce {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dyce {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
