"""``dyce workflow-info``: the facts about this package that the Snakemake workflow needs, as JSON.

The workflow calls it once when it loads (``workflow/rules/common.smk``), instead of reading the
package's sources itself:

- ``commands``: every ``dyce`` subcommand → the package files its job runs, i.e. the static
  import closure (:mod:`dyce.cli.import_closure`) of the CLI module that defines the command
  together with that of :mod:`dyce.cli`. Declared as a rule's inputs, an edit of one of them
  reruns exactly the jobs whose command imports it.
- ``architectures``: ``known`` backbone names and the ``unknown`` ones among ``--architecture``.

Fast and torch-free unless an ``--architecture`` outside the small ResNets asks for the
torchvision model list.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import dyce
from dyce.cli.import_closure import import_closure
from dyce.network.architectures import SMALL_RESNET_BLOCKS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``workflow-info``."""
    parser = subparsers.add_parser(
        "workflow-info",
        help="print, as JSON, each command's library files and the known architectures",
        description="Print what the Snakemake workflow needs to know about this package: for "
        "every subcommand the package files its job runs (the static import closure of the "
        "command's CLI module and of dyce.cli), and which backbone names are known.",
    )
    parser.add_argument("--architecture", dest="architectures", action="append", default=[],
                        metavar="NAME", help="report whether NAME is a known backbone "
                        "(repeatable; names beyond the small ResNets import torchvision)")
    parser.set_defaults(func=run_workflow_info)


def run_workflow_info(args: argparse.Namespace) -> int:
    print(json.dumps(workflow_info(args.architectures), indent=1, sort_keys=True))
    return 0


def workflow_info(architectures: list[str]) -> dict:
    """``{"commands": {command: [file, …]}, "architectures": {"known": […], "unknown": […]}}``.

    Files are relative to the folder that holds the package (``dyce/cli/__init__.py``, …).
    """
    package_dir = Path(dyce.__file__).parent
    return {
        "commands": {
            command: [
                str(path.relative_to(package_dir.parent))
                for path in import_closure(package_dir, ["dyce.cli", module])
            ]
            for command, module in command_modules().items()
        },
        "architectures": architecture_report(architectures),
    }


def command_modules() -> dict[str, str]:
    """Each subcommand of the ``dyce`` parser → the module that defines it (its ``func``)."""
    from dyce.cli import build_parser

    parser = build_parser()
    commands = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, subparser in action.choices.items():
                commands[command] = subparser.get_default("func").__module__
    return dict(sorted(commands.items()))


def architecture_report(names: list[str]) -> dict[str, list[str]]:
    """Known backbone names and the ``unknown`` ones among ``names``.

    Only the small ResNets are listed unless a name outside them is asked about; then the
    torchvision classification models are listed as well and each such name is checked
    (torch, and timm for ``timm:`` names, are imported for that).
    """
    known = set(SMALL_RESNET_BLOCKS)
    others = sorted(set(names) - known)
    if not others:
        return {"known": sorted(known), "unknown": []}
    from dyce.network.models import available_models, is_known_model

    known |= set(available_models())
    return {"known": sorted(known),
            "unknown": [name for name in others if name not in known and not is_known_model(name)]}
