"""The workflow through the Slurm profile on a real single-node cluster on localhost.

The cluster is started by ``scripts/slurm_local.sh start`` (installs the Debian packages when
missing). Checked: every job was submitted with the profile's partition and account and with
the memory, time limit and CPUs the rules and the profile declare (read back from ``sacct``'s
``SubmitLine``); the results equal a local run's; a profile with an account the cluster does
not know makes the run fail.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
COPIED = ("workflow", "config", "dyce", "profiles", "pyproject.toml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
PROFILE = "profiles/slurm-cpu"  # the local cluster has no GPU

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running local Slurm cluster; skips only where one cannot be started at all.

    A cluster that was already running is left running; one started here is stopped after.
    """
    script = str(REPO / "scripts" / "slurm_local.sh")
    if os.geteuid() != 0:
        pytest.skip("starting a local Slurm cluster needs root")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("no apt-get to install Slurm and no Slurm installed")
    running = subprocess.run([script, "status"], capture_output=True, timeout=60).returncode == 0
    if not running:
        result = subprocess.run([script, "start"], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"slurm_local.sh start failed:\n{result.stderr[-3000:]}"
        status = subprocess.run([script, "status"], capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
    yield
    if not running:
        subprocess.run([script, "stop"], capture_output=True, timeout=120)


def slurm_config(dest: Path) -> str:
    """The tiny config (two models, all six methods) over 251 values of λ."""
    config = yaml.safe_load((REPO / "config" / "test" / "tiny.yaml").read_text())
    config["search"]["lambdas"] = {"start": 0.5, "stop": 1.0, "step": 0.002}
    path = dest / "config" / "test" / "slurm.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path.relative_to(dest))


def prepare(dest: Path) -> str:
    dest.mkdir(parents=True)
    for name in COPIED:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name, ignore=IGNORED)
        else:
            shutil.copy2(REPO / name, dest / name)
    return slurm_config(dest)


def start(workdir: Path, config: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    return subprocess.Popen(
        [SNAKEMAKE, "--configfile", config, *args],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(process: subprocess.Popen, what: str, timeout: float = 900,
           succeed: bool = True) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{what} timed out:\n{output[-4000:]}")
    if succeed:
        assert process.returncode == 0, f"{what} failed:\n{output[-6000:]}"
    else:
        assert process.returncode != 0, f"{what} succeeded:\n{output[-6000:]}"
    return output


# --------------------------------------------------------------------------- what was declared


def rule_threads() -> dict[str, int]:
    """Each rule's declared ``threads`` (from workflow/rules/*.smk)."""
    threads = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.MULTILINE)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            found = re.search(r"^    threads: (\d+)$", body, flags=re.MULTILINE)
            if found:
                threads[name] = int(found.group(1))
    return threads


def planned_jobs(workdir: Path, config: str) -> list[dict]:
    """Every job of a dry run with the profile: rule, wildcards and planned resources."""
    result = subprocess.run([SNAKEMAKE, "--configfile", config, "--profile", PROFILE, "-n"],
                            cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = []
    # a group job's members are indented under a "Group job" line
    for block in re.split(r"\n(?=\s*\[[^\n]*\]\n\s*rule )", result.stdout + result.stderr):
        rule = re.search(r"^\s*rule (\w+):$", block, flags=re.MULTILINE)
        resources = re.search(r"^\s+resources: (.*)$", block, flags=re.MULTILINE)
        if rule is None or resources is None:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.MULTILINE)
        values = dict(item.split("=", 1) for item in resources.group(1).split(", "))
        named = dict(item.split("=", 1) for item in wildcards.group(1).split(", ")) \
            if wildcards else {}
        jobs.append({
            "rule": rule.group(1),
            "wildcards": named,
            "mem_mb": int(values["mem_mb"]),
            "runtime": int(values["runtime"]),
        })
    return jobs


def expected_submissions(jobs: list[dict], profile: dict) -> Counter:
    """(comment, mem_mb, minutes, cpus) of every sbatch call the planned jobs should make.

    A group job (one per connected component of a group's jobs) runs a chain of its members:
    it asks for the largest member's CPUs and memory and the sum of their runtimes.
    """
    threads = rule_threads()
    groups = profile.get("groups", {})
    expected = Counter()
    chains: dict[tuple[str, str, str], list[dict]] = {}
    for job in jobs:
        if job["rule"] not in threads:
            continue  # a target rule (e.g. all): runs no command, is not submitted
        if job["rule"] in groups:
            # the profile's groups are per (model, method)
            key = groups[job["rule"]], job["wildcards"]["model"], job["wildcards"]["method"]
            chains.setdefault(key, []).append(job)
        else:
            # the plugin names a job by its rule and wildcard values
            wildcards = "_".join(job["wildcards"].values())
            comment = f"rule_{job['rule']}" + (f"_wildcards_{wildcards}" if wildcards else "")
            expected[(comment, job["mem_mb"], job["runtime"], threads[job["rule"]])] += 1
    for (group, _, _), members in chains.items():
        rules = sorted({job["rule"] for job in members})
        comment = f"rule_{group}_{'_'.join(rules)}"
        expected[(comment, max(job["mem_mb"] for job in members),
                  sum(job["runtime"] for job in members),
                  max(threads[job["rule"]] for job in members))] += 1
    return expected


# --------------------------------------------------------------------------- what was submitted


def submitted(run_id: str) -> list[dict[str, str]]:
    """The options of every sbatch call of a Snakemake run (``sacct``'s ``SubmitLine``)."""
    table = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-S", "now-2hours", "--name", run_id,
         "-o", "JobID,State,SubmitLine%10000"],
        capture_output=True, text=True, check=True,
    ).stdout
    calls = []
    for line in table.splitlines():
        job_id, state, submit_line = line.split("|", 2)
        words = shlex.split(submit_line)
        assert words[0].endswith("sbatch"), submit_line
        options = {"state": state, "job_id": job_id}
        for index, word in enumerate(words[1:], start=1):
            if word.startswith("--") and "=" in word:
                key, value = word.split("=", 1)
                options[key] = value
            elif word.startswith("-") and index + 1 < len(words):
                options[word] = words[index + 1]
        calls.append(options)
    return calls


def run_id(output: str) -> str:
    found = re.search(r"SLURM run ID: (\S+)", output)
    assert found, output[-3000:]
    return found.group(1)


# --------------------------------------------------------------------------- tests


def test_slurm_run_submits_what_was_declared_and_equals_a_local_run(slurm_cluster, tmp_path):
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    config = prepare(local_dir)
    prepare(slurm_dir)
    profile = yaml.safe_load((REPO / PROFILE / "profile.yaml").read_text())
    plan = planned_jobs(slurm_dir, config)
    slurm = start(slurm_dir, config, "--profile", PROFILE)
    # Same threads per job as on the cluster (Snakemake sets OMP_NUM_THREADS from them), so
    # training and recording compute the very same floats.
    local = start(local_dir, config, "--cores", "2")
    finish(local, "local run")
    output = finish(slurm, "slurm run")

    calls = submitted(run_id(output))
    assert calls and all(call["state"] == "COMPLETED" for call in calls), calls
    defaults = profile["default-resources"]
    for call in calls:
        assert call["-p"] == defaults["slurm_partition"], call
        assert call["-A"] == defaults["slurm_account"], call
    made = Counter((call["--comment"], int(call["--mem"]), int(call["-t"]),
                    int(call["--cpus-per-task"])) for call in calls)
    assert made == expected_submissions(plan, profile)
    # training and recording got the profile's own memory and time, not the rules' defaults
    for call in calls:
        rule = re.match(r"rule_(\w+?)_wildcards_", call["--comment"])
        overrides = profile["set-resources"].get(rule.group(1) if rule else "", {})
        if "mem_mb" in overrides:
            assert int(call["--mem"]) == overrides["mem_mb"], call
            assert int(call["-t"]) == overrides["runtime"], call

    for table in ("results/summary.csv", *(f"results/digits/{m}/summary.csv" for m in "ab")):
        assert pl.read_csv(slurm_dir / table).equals(pl.read_csv(local_dir / table)), table
    fronts = sorted((local_dir / "results/digits").glob("*/front/*.parquet"))
    assert len(fronts) == 7
    for front in fronts:
        other = slurm_dir / front.relative_to(local_dir)
        assert pl.read_parquet(other).equals(pl.read_parquet(front)), front
    searched = pl.read_parquet(slurm_dir / "results/digits/a/search/circular.parquet")
    assert searched["lambda"].n_unique() == 251  # the whole grid, searched in one job
    # Every job wrote its benchmark file on the cluster, as locally.
    benchmarks = sorted(p.relative_to(slurm_dir / "results/benchmarks")
                        for p in (slurm_dir / "results/benchmarks").rglob("*.tsv"))
    assert benchmarks == sorted(p.relative_to(local_dir / "results/benchmarks")
                                for p in (local_dir / "results/benchmarks").rglob("*.tsv"))


def test_unknown_account_in_a_copied_profile_fails_the_run(slurm_cluster, tmp_path):
    workdir = tmp_path / "bogus"
    config = prepare(workdir)
    profile = yaml.safe_load((workdir / PROFILE / "profile.yaml").read_text())
    profile["default-resources"]["slurm_account"] = "no_such_account"
    copied = workdir / "profiles" / "mine"
    copied.mkdir()
    (copied / "profile.yaml").write_text(yaml.safe_dump(profile))
    process = start(workdir, config, "--profile", "profiles/mine", "results/digits/splits.json")
    output = finish(process, "run with an unknown account", timeout=300, succeed=False)
    assert "no_such_account" in output, output[-3000:]
    assert not (workdir / "results" / "digits" / "splits.json").exists()
