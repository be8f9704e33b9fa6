"""The workflow passes ``snakemake --lint`` and ``snakefmt --check``; its rules log and benchmark;
every config key of the schema is documented in config/README.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.xdist_group("workflow")


def test_snakemake_lint_is_clean():
    result = subprocess.run([str(BIN / "snakemake"), "--lint", "--cores", "1"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in output, output[-3000:]


def test_snakefmt_leaves_the_workflow_unchanged():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", "workflow"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def rule_blocks() -> dict[str, str]:
    """Rule name → its text, for every rule of workflow/rules/*.smk."""
    blocks = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.MULTILINE)
        blocks.update(dict(zip(parts[1::2], parts[2::2], strict=True)))
    return blocks


def test_every_rule_with_an_action_logs_benchmarks_and_declares_resources():
    blocks = rule_blocks()
    actions = {name: text for name, text in blocks.items() if "    shell:" in text}
    assert len(actions) >= 12
    for name, text in actions.items():
        for directive in ("log:", "benchmark:", "threads:", "resources:"):
            assert f"    {directive}" in text, f"rule {name} lacks {directive}"
        assert "results/benchmarks/" in text, name
        assert '"logs/' in text, name


def schema_keys(schema: dict, prefix: str = "") -> set[str]:
    """Dotted names of every configurable key (``<name>`` for user-chosen mapping keys)."""
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        keys.add(f"{prefix}{name}")
        keys |= schema_keys(sub, f"{prefix}{name}.")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        keys |= schema_keys(extra, f"{prefix}<name>.")
    ref = schema.get("$ref")
    if ref and prefix:
        keys |= schema_keys(SCHEMA["$defs"][ref.rsplit("/", 1)[1]], prefix)
    return keys


SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_config_readme_documents_every_key():
    readme = (REPO / "config" / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_<>.]+)`", readme))
    missing = sorted(key for key in schema_keys(SCHEMA) if key not in documented)
    assert not missing, f"config/README.md does not document: {missing}"
