"""Time the default pipeline from scratch and the no-op rerun (median of several).

    .venv/bin/python benchmarks/workflow.py [--configfile config/config.yaml] [--reruns 3]
                                            [--keep-results DIR]

Runs in a temporary copy of the repository (so ``results/`` of the checkout is untouched), with
``--cores 2`` unless ``--cores`` is given. Prints one Markdown table row per measurement and the
slowest rules of the fresh run (from the per-job benchmark files).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
COPIED = ("workflow", "config", "dyce", "pyproject.toml")


def run(workdir: Path, args: list[str]) -> float:
    """Wall seconds of one snakemake run; raises when it fails."""
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    start = time.perf_counter()
    result = subprocess.run([SNAKEMAKE, *args], cwd=workdir, env=env, capture_output=True,
                            text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stderr[-4000:]}")
    return elapsed


def slowest_rules(workdir: Path, count: int = 5) -> list[tuple[str, float, int]]:
    """Rules by total wall seconds over their jobs (from results/benchmarks/**.tsv)."""
    totals: dict[str, list[float]] = {}
    root = workdir / "results" / "benchmarks"
    for path in root.rglob("*.tsv"):
        rule = path.relative_to(root).parts[0].removesuffix(".tsv")
        seconds = float(path.read_text().splitlines()[1].split("\t")[0])
        totals.setdefault(rule, []).append(seconds)
    ranked = sorted(totals.items(), key=lambda item: -sum(item[1]))
    return [(rule, sum(values), len(values)) for rule, values in ranked[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--reruns", type=int, default=3)
    parser.add_argument("--keep-results", type=Path, default=None, metavar="DIR",
                        help="copy the run's results/ here before the temporary copy is removed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dyce-bench-") as tmp:
        workdir = Path(tmp)
        for name in COPIED:
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, workdir / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(REPO / name, workdir / name)
        common = ["--cores", str(args.cores), "--configfile", args.configfile]
        fresh = run(workdir, common)
        jobs = sum(1 for _ in (workdir / "results" / "benchmarks").rglob("*.tsv"))
        reruns = [run(workdir, common) for _ in range(args.reruns)]
        load = os.getloadavg()[0]
        print(f"| pipeline from scratch ({args.configfile}, {jobs} jobs, --cores {args.cores}) "
              f"| {fresh:.1f} s | 1 run |")
        print(f"| no-op rerun | {statistics.median(reruns):.1f} s | median of {len(reruns)} "
              f"({', '.join(f'{r:.1f}' for r in reruns)}) |")
        print(f"\nload average at the end: {load:.2f}; slowest rules (total s, jobs):")
        for rule, seconds, count in slowest_rules(workdir):
            print(f"  {rule:16s} {seconds:7.1f} s  {count:4d} jobs")
        if args.keep_results is not None:
            shutil.copytree(workdir / "results", args.keep_results, dirs_exist_ok=True)


if __name__ == "__main__":
    main()
