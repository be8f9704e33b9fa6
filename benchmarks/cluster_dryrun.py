"""Time a dry run of the workflow through the Slurm profile at paper scale (median of several).

    .venv/bin/python benchmarks/cluster_dryrun.py [--models 4] [--lambdas 550] [--runs 3]
                                                  [--profile profiles/slurm]

Writes a config with MODELS ImageNet-sized torchvision models (pretrained weights, an
``imagefolder`` dataset named imagenet that need not exist: a dry run reads no data) and LAMBDAS values of λ,
runs ``snakemake --profile PROFILE --dry-run`` in a temporary copy of the repository and prints
one Markdown table row: the planned jobs, the median wall and CPU time, the load average.
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
ARCHITECTURES = ("resnet18", "resnet50", "resnet152", "vit_b_16", "swin_t", "convnext_tiny")
WEIGHTS = {
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
    "resnet152": "ResNet152_Weights.IMAGENET1K_V1",
    "vit_b_16": "ViT_B_16_Weights.IMAGENET1K_V1",
    "swin_t": "Swin_T_Weights.IMAGENET1K_V1",
    "convnext_tiny": "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
}


def paper_config(models: int, lambdas: int) -> dict:
    """MODELS pretrained ImageNet backbones (five exit types each, the DyCE defaults) and
    LAMBDAS values of λ ending at 1.0 in steps of 0.001."""
    start = round(1.0 - (lambdas - 1) * 0.001, 6)
    return {
        "datasets": {"imagenet": {"kind": "imagefolder", "root": "data/imagenet",
                                  "num_classes": 1000}},
        "models": {
            name: {"dataset": "imagenet", "architecture": name, "weights": WEIGHTS[name]}
            for name in ARCHITECTURES[:models]
        },
        "search": {"lambdas": {"start": start, "stop": 1.0, "step": 0.001}},
    }


def dry_run(workdir: Path, profile: str, config: str) -> tuple[float, float, int]:
    """Wall and CPU seconds (user + system, child processes included) of one dry run, and the
    number of jobs it plans."""
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    result = subprocess.run([SNAKEMAKE, "--profile", profile, "--dry-run", "--quiet", "rules",
                             "--configfile", config],
                            cwd=workdir, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stderr[-4000:]}")
    total = re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, flags=re.MULTILINE)
    return elapsed, cpu, int(total.group(1)) if total else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4, choices=range(1, len(ARCHITECTURES) + 1))
    parser.add_argument("--lambdas", type=int, default=550)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="profiles/slurm")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dyce-bench-") as tmp:
        workdir = Path(tmp)
        for name in COPIED:
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, workdir / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(REPO / name, workdir / name)
        config = workdir / "config" / "paper_scale.yaml"
        config.write_text(yaml.safe_dump(paper_config(args.models, args.lambdas)))
        runs = [dry_run(workdir, args.profile, str(config)) for _ in range(args.runs)]
    seconds = [elapsed for elapsed, _, _ in runs]
    cpu = [used for _, used, _ in runs]
    slurm = "Slurm client, controller " + (
        "up" if shutil.which("sinfo") and subprocess.run(
            ["scontrol", "ping"], capture_output=True, timeout=30).returncode == 0
        else "down") if shutil.which("sinfo") else "no Slurm client"
    print(f"| dry run, --profile {args.profile}, {args.models} models x {args.lambdas} λ "
          f"({runs[0][2]} jobs; {slurm}) | {statistics.median(seconds):.1f} s wall, "
          f"{statistics.median(cpu):.1f} s CPU | median of {len(seconds)} "
          f"({', '.join(f'{s:.1f}' for s in seconds)} s wall); load average "
          f"{os.getloadavg()[0]:.1f} |")


if __name__ == "__main__":
    main()
