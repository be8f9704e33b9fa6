"""Time ``snakemake --dry-run`` of a paper-scale plan: MODELS models × LAMBDAS λ × 3 methods.

    .venv/bin/python benchmarks/dryrun.py [--models 4] [--lambdas 550] [--repeats 3]
                                          [--repo DIR] [--profile profiles/slurm]

Writes a config with ``--models`` small ResNets on digits and the λ grid 0.500, 0.501, … (one
value per ``--lambdas``), copies the repository (``--repo``, default this checkout) to a
temporary folder and times a dry run there (nothing has been built, so the whole DAG is
planned), locally with two cores or through ``--profile`` (e.g. the Slurm profile: its groups
and resources are planned too; no cluster is needed). Prints the number of planned jobs and the
median wall and CPU time (CPU time of Snakemake and its subprocesses, steadier than wall time on
a busy machine).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
COPIED = ("workflow", "config", "dyce", "profiles", "pyproject.toml")


def paper_config(models: int, lambdas: int) -> dict:
    """``models`` small ResNets on digits, every DyCE method and peer, ``lambdas`` λ."""
    return {
        "datasets": {"digits": {"seed": 0}},
        "models": {
            f"m{index}": {"dataset": "digits", "architecture": "small_resnet8",
                          "exit_types": ["mlp1x32", "mlp2x32"]}
            for index in range(models)
        },
        "search": {"lambdas": [round(0.5 + 0.001 * i, 3) for i in range(lambdas)]},
    }


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run(workdir: Path, config: str, profile: str | None = None) -> tuple[float, float, int]:
    """Wall and CPU seconds of one dry run (subprocesses included) and the jobs it planned."""
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    how = ["--profile", profile] if profile else ["--cores", "2"]
    cpu, start = children_cpu(), time.perf_counter()
    result = subprocess.run([SNAKEMAKE, "--dry-run", *how, "--configfile", config],
                            cwd=workdir, env=env, capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - start, children_cpu() - cpu
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stderr[-4000:]}")
    total = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, re.MULTILINE)
    return elapsed, cpu, int(total.group(1)) if total else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--lambdas", type=int, default=550)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="repository to copy and plan (default: this checkout)")
    parser.add_argument("--profile", default=None,
                        help="plan through this profile, e.g. profiles/slurm (default: local, "
                        "two cores)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dyce-dryrun-") as tmp:
        workdir = Path(tmp)
        for name in COPIED:
            source = args.repo / name
            if not source.exists():
                continue  # an older checkout without profiles/
            if source.is_dir():
                shutil.copytree(source, workdir / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, workdir / name)
        config = workdir / "config" / "paper_scale.yaml"
        config.write_text(yaml.safe_dump(paper_config(args.models, args.lambdas)))
        runs = [dry_run(workdir, str(config.relative_to(workdir)), args.profile)
                for _ in range(args.repeats)]
    wall = [elapsed for elapsed, _, _ in runs]
    cpu = [seconds for _, seconds, _ in runs]
    through = f", --profile {args.profile}" if args.profile else ""
    print(f"| dry run{through}, {args.models} models × {args.lambdas} λ × 3 methods "
          f"({runs[0][2]} jobs) "
          f"| {statistics.median(wall):.1f} s wall, {statistics.median(cpu):.1f} s CPU "
          f"| median of {len(wall)} ({', '.join(f'{s:.1f}' for s in wall)} s wall), load "
          f"average {os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
