"""The static import closure behind the workflow's rerun rules, and ``dyce workflow-info``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from dyce.cli.import_closure import import_closure, module_file

REPO = Path(__file__).resolve().parents[1]


def write_package(root: Path, files: dict[str, str]) -> Path:
    """A package ``dyce`` under ``root`` with the given files (relative path → source)."""
    package = root / "dyce"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return package


def names(package: Path, modules: list[str]) -> list[str]:
    return [str(path.relative_to(package)) for path in import_closure(package, modules)]


def test_closure_follows_every_import_statement_at_any_depth(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "from dyce.errors import E\n",
        "errors.py": "E = 1\n",
        "cli/__init__.py": "",
        "cli/run.py": """
            import argparse

            def run():
                from dyce.search.cuts import scan
                if False:
                    import dyce.report
            """,
        "search/__init__.py": "",
        "search/cuts.py": "from . import cost\nfrom .context import Context\n",
        "search/cost.py": "",
        "search/context.py": "from .. import io\nContext = 1\n",
        "io.py": "",
        "report/__init__.py": "",
        "report/plots.py": "import matplotlib\n",
        "unused.py": "",
    })
    assert names(package, ["dyce.cli.run"]) == [
        "__init__.py", "cli/__init__.py", "cli/run.py", "errors.py", "io.py",
        "report/__init__.py", "search/__init__.py", "search/context.py", "search/cost.py",
        "search/cuts.py",
    ]


def test_from_import_counts_a_submodule_but_not_a_name(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "def helper(): pass\n",
        "a/b.py": "",
        "a/c.py": "",
        "main.py": "from dyce.a import b, helper\n",
    })
    assert names(package, ["dyce.main"]) == ["__init__.py", "a/__init__.py", "a/b.py",
                                             "main.py"]


def test_parents_of_an_imported_module_are_followed_too(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "from dyce.a import heavy\n",
        "a/heavy.py": "",
        "a/b.py": "",
        "main.py": "import dyce.a.b\n",
    })
    assert names(package, ["dyce.main"]) == ["__init__.py", "a/__init__.py", "a/b.py",
                                             "a/heavy.py", "main.py"]


def test_other_packages_and_string_imports_do_not_count(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "main.py": "import importlib\nimport dycex\nimportlib.import_module('dyce.x')\n",
        "x.py": "",
    })
    assert names(package, ["dyce.main"]) == ["__init__.py", "main.py"]
    assert module_file(package, "dyce.missing") is None


def workflow_info(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "dyce", "workflow-info", *args], cwd=REPO,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_workflow_info_lists_every_command_with_its_closure_without_torch():
    info = workflow_info("--architecture", "small_resnet8")
    package = REPO / "dyce"
    assert {"search", "evaluate", "train-exits", "workflow-info"} <= set(info["commands"])
    for command, files in info["commands"].items():
        assert "dyce/__init__.py" in files and "dyce/cli/__init__.py" in files, command
        assert all((REPO / name).is_file() for name in files), command
    cli_only = {str(p.relative_to(REPO)) for p in import_closure(package, ["dyce.cli"])}
    assert cli_only < set(info["commands"]["search"])
    assert info["architectures"]["unknown"] == []
    assert "small_resnet8" in info["architectures"]["known"]
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from dyce.cli import main; "
         "main(['workflow-info']); print('torch' in sys.modules, file=sys.stderr)"],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert probe.stderr.strip() == "False"


def test_workflow_info_reports_unknown_architectures():
    info = workflow_info("--architecture", "resnet50", "--architecture", "resnet_9000")
    assert info["architectures"]["unknown"] == ["resnet_9000"]
    assert "resnet50" in info["architectures"]["known"]
