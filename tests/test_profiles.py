"""The Snakemake profiles: every setting of a cluster profile reaches Snakemake unchanged, every
planned job carries the profile's partition and account, the CPU variant equals the GPU one
without its GPU requests.

Runs Snakemake's own argument parsing and dry runs; no cluster is needed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CLUSTER_PROFILES = ("profiles/slurm", "profiles/slurm-cpu")
GPU_RULES = ("train_backbone", "train_exits", "record", "record_shard", "record_from_features",
             "cache_features", "cache_features_shard")

pytestmark = pytest.mark.xdist_group("workflow")


def profile(name: str) -> dict:
    return yaml.safe_load((REPO / name / "profile.yaml").read_text())


def parsed(*argv: str) -> dict[str, str]:
    """Snakemake's parsed command line (as reprs) when run from the repository root."""
    from snakemake.cli import parse_args

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        _, args = parse_args(list(argv))
    finally:
        os.chdir(cwd)
    return {key: shown(value) for key, value in vars(args).items() if key != "workflow_profile"}


def shown(value) -> str:
    """``repr`` of a parsed value; objects without their own repr by their attributes."""
    text = repr(value)
    if " object at 0x" in text and hasattr(value, "__dict__"):
        return f"{type(value).__name__}{sorted(vars(value).items())!r}"
    return text


@pytest.mark.parametrize("name", CLUSTER_PROFILES)
def test_nothing_overrides_a_cluster_profile(name):
    """What Snakemake makes of ``--profile NAME`` is exactly what the profile alone says: no
    auto-loaded workflow profile changes a resource, a latency or the cores of group jobs."""
    alone = parsed("--profile", name, "--workflow-profile", "none")
    effective = parsed("--profile", name)
    changed = sorted(key for key in alone if effective[key] != alone[key])
    assert not changed, {key: (alone[key], effective[key]) for key in changed}
    # and the profile was read at all
    assert "slurm_partition" in effective["default_resources"]
    assert effective["executor"] == "'slurm'"
    assert effective["cores"] == "None"


def test_cpu_profile_is_the_gpu_profile_without_gpus():
    gpu, cpu = profile("profiles/slurm"), profile("profiles/slurm-cpu")
    assert any(gpu["set-resources"][rule].get("gpu") for rule in GPU_RULES)
    for rule in GPU_RULES:
        gpu["set-resources"][rule].pop("gpu", None)
    assert set(gpu.pop("set-threads")) <= set(GPU_RULES)  # data-loading CPUs beside the GPU
    assert cpu == gpu
    assert not any("gpu" in resources for resources in cpu["set-resources"].values())


RESOURCES = re.compile(r"^\s+resources: (.*)$", re.MULTILINE)
RULE = re.compile(r"^\s*(?:local)?rule (\w+):$", re.MULTILINE)


@pytest.mark.parametrize("name", CLUSTER_PROFILES)
def test_dry_run_plans_every_job_with_the_profiles_partition_and_account(name):
    settings = profile(name)["default-resources"]
    result = subprocess.run(
        [SNAKEMAKE, "--profile", name, "--dry-run", "--configfile", "config/test/tiny.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # a group job's members are indented under a "Group job" line
    jobs = [block for block in re.split(r"\n(?=\s*\[[^\n]*\]\n\s*(?:local)?rule )", output)
            if RULE.search(block) and RULE.search(block).group(1) != "all"]
    assert len(jobs) > 20, output[-3000:]
    for block in jobs:
        rule = RULE.search(block).group(1)
        resources = dict(item.split("=", 1) for item in RESOURCES.search(block).group(1)
                         .split(", "))
        assert resources["slurm_partition"] == settings["slurm_partition"], rule
        assert resources["slurm_account"] == settings["slurm_account"], rule
        gpus = profile(name)["set-resources"].get(rule, {}).get("gpu")
        assert resources.get("gpu") == (None if gpus is None else str(gpus)), rule
