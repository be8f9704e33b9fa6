"""The tiny workflow through the Slurm profile on a real single-node cluster on localhost.

The cluster is started by ``scripts/slurm_local.sh start`` (installs the Debian packages when
missing). The result tables must equal those of a local run of the same config.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
COPIED = ("workflow", "config", "dyce", "profiles", "pyproject.toml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")

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


def small_config(dest: Path) -> str:
    """The tiny config reduced to its model ``b`` (one DyCE method, one peer strategy)."""
    config = yaml.safe_load((REPO / "config" / "test" / "tiny.yaml").read_text())
    config["models"] = {"b": config["models"]["b"]}
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
    return small_config(dest)


def start(workdir: Path, config: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    return subprocess.Popen(
        [SNAKEMAKE, "--configfile", config, *args],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(process: subprocess.Popen, what: str, timeout: float = 600) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{what} timed out:\n{output[-4000:]}")
    assert process.returncode == 0, f"{what} failed:\n{output[-6000:]}"
    return output


def test_slurm_run_equals_local_run(slurm_cluster, tmp_path):
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    config = prepare(local_dir)
    prepare(slurm_dir)
    slurm = start(slurm_dir, config, "--profile", "profiles/slurm-cpu")  # the cluster has no GPU
    # Same threads per job as on the cluster (Snakemake sets OMP_NUM_THREADS from them), so
    # training and recording compute the very same floats.
    local = start(local_dir, config, "--cores", "2")
    finish(local, "local run")
    output = finish(slurm, "slurm run")
    assert "Submitted job" in output or "submitted" in output.lower(), output[-3000:]
    jobs = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobName,State", "-S", "now-1hour"],
                          capture_output=True, text=True, check=True).stdout
    assert "COMPLETED" in jobs

    for table in ("results/summary.csv", "results/digits/b/summary.csv"):
        assert pl.read_csv(slurm_dir / table).equals(pl.read_csv(local_dir / table)), table
    for front in sorted((local_dir / "results/digits/b/front").glob("*.parquet")):
        other = slurm_dir / front.relative_to(local_dir)
        assert pl.read_parquet(other).equals(pl.read_parquet(front)), front.name
    # Every job wrote its benchmark file on the cluster, as locally.
    benchmarks = sorted(p.relative_to(slurm_dir / "results/benchmarks")
                        for p in (slurm_dir / "results/benchmarks").rglob("*.tsv"))
    assert benchmarks == sorted(p.relative_to(local_dir / "results/benchmarks")
                                for p in (local_dir / "results/benchmarks").rglob("*.tsv"))
