"""The ``dyce`` command line.

Every module ``dyce/cli/*_cmd.py`` contributes subcommands through ``register(subparsers)``;
each subcommand sets ``func`` (called with the parsed namespace, returns an exit status or None).
Command modules import their heavy dependencies (torch, polars) inside ``func`` so that
``dyce --help`` and the torch-free commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from dyce import __version__
from dyce.errors import DyceError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand found in ``dyce.cli``."""
    parser = argparse.ArgumentParser(
        prog="dyce",
        description="Dynamic Configurable Exiting: exit records, MACs, configuration search, "
        "evaluation and early-exit inference.",
    )
    parser.add_argument("--version", action="version", version=f"dyce {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    package_path = __path__  # type: ignore[name-defined]
    for module_info in sorted(pkgutil.iter_modules(package_path), key=lambda m: m.name):
        if module_info.name.endswith("_cmd"):
            module = importlib.import_module(f"{__name__}.{module_info.name}")
            module.register(subparsers)
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
