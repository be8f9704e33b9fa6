"""The ``dyce`` command line.

Every module ``dyce/cli/*_cmd.py`` contributes subcommands through ``register(subparsers)``;
each subcommand sets ``func`` (called with the parsed namespace, returns an exit status or None).
Command modules import their heavy dependencies (torch, polars) inside ``func`` so that
``dyce --help`` and the torch-free commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from dyce import __version__
from dyce.errors import DyceError
from dyce.io import TERMINATED_STATUS, Terminated, refuse_overwriting_inputs

#: Options that name files a command writes; every other path-like argument is an input.
OUTPUT_OPTIONS = ("out", "csv")


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
