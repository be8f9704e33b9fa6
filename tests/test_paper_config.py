"""config/paper.yaml: the paper's ImageNet reproduction plans as it should (dry run, also through
the cluster and paper profiles), and the same rules run for real on a tiny ImageNet-layout
folder (random weights, 32 px, one epoch)."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import polars as pl
import pytest
import yaml
from PIL import Image

from tests.test_workflow import (
    REPO,
    SNAKEMAKE,
    by_rule,
    copy_repo,
    parse_job_details,
    parse_jobs,
    snakemake,
)

PAPER = "config/paper.yaml"
PAPER_MODELS = {
    "convnextv2_atto": "timm:convnextv2_atto",
    "resnet50": "timm:resnet50",
    "resnet152": "timm:resnet152",
    "convnextv2_tiny": "timm:convnextv2_tiny",
    "davit_base": "timm:davit_base",
}
PAPER_EXIT_TYPES = ["mlp1x1000", "mlp3x500", "mlp3x1000", "mlp5x500", "mlp5x1000"]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("workflow")]


@pytest.fixture(scope="module")
def paper() -> dict:
    return yaml.safe_load((REPO / PAPER).read_text())


def test_paper_config_names_the_papers_models_exits_and_grid(paper):
    models = paper["models"]
    assert {name: spec["architecture"] for name, spec in models.items()} == PAPER_MODELS
    for spec in models.values():
        assert spec["dataset"] == "imagenet"
        assert spec["weights"]  # pretrained: no backbone training
        assert spec["exit_types"] == PAPER_EXIT_TYPES
        assert spec["exit_training"]["feature_cache"]  # one backbone pass, not 50
    assert paper["datasets"]["imagenet"]["kind"] == "imagefolder"
    assert paper["search"]["lambdas"] == {"start": 0.5, "stop": 1.05, "step": 0.001}


def _lambdas(shell: str) -> list[str]:
    return re.search(r"--lambda ((?:[0-9.]+ ?)+)", shell).group(1).split()


def test_dry_run_plans_the_reproduction(tmp_path, paper):
    workdir = copy_repo(tmp_path / "repo")
    result = snakemake(workdir, "--dry-run", "--printshellcmds", config=PAPER, timeout=600)
    jobs = parse_job_details(result.stdout + result.stderr)
    counts = by_rule([(job["rule"], job["output"]) for job in jobs])
    assert counts.get("train_backbone", 0) == 0  # every backbone is pretrained
    assert counts["prepare_data"] == 1
    for model, architecture in PAPER_MODELS.items():
        mine = [job for job in jobs if f"/{model}/" in job["output"]]
        rules = by_rule([(job["rule"], job["output"]) for job in mine])
        shards = paper["record"]["shards"]
        assert rules["train_exits"] == 1 and rules["macs_analysis"] == 1
        assert rules["record_shard"] == 2 * shards  # search (= the training set) and val
        assert rules["concat_records"] == 2
        assert rules["cache_features_shard"] == shards and rules["concat_features"] == 1
        (train,) = [job for job in mine if job["rule"] == "train_exits"]
        weights = paper["models"][model]["weights"]
        assert f"--model {architecture} " in train["shell"]
        assert f"--weights {weights} " in train["shell"]
        assert "--epochs 50 " in train["shell"] and "--features " in train["shell"]
        searches = [job for job in mine if job["rule"].startswith("search_") and
                    "--lambda" in job["shell"]]
        assert searches
        assert sum(len(_lambdas(job["shell"])) for job in searches) == 3 * 551  # 3 methods
        grid = sorted({float(lam) for job in searches for lam in _lambdas(job["shell"])})
        assert (len(grid), grid[0], grid[-1]) == (551, 0.5, 1.05)


def test_cluster_dry_run_gives_the_gpu_jobs_paper_sized_resources(tmp_path):
    workdir = copy_repo(tmp_path / "repo")
    (workdir / "profiles").symlink_to(REPO / "profiles")
    command = [SNAKEMAKE, "--dry-run", "--profile", "profiles/slurm", "--workflow-profile",
               "profiles/paper", "--configfile", PAPER]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(workdir)})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    resources = {}
    rule = None
    for line in output.splitlines():
        header = re.match(r"^rule (\w+):$", line)
        if header:
            rule = header.group(1)
        elif rule and line.startswith("    resources: "):
            resources.setdefault(rule, line)
    assert "gpu=1" in resources["train_exits"] and "runtime=2880" in resources["train_exits"]
    assert "gpu=1" in resources["record_shard"] and "gpu=1" in resources["cache_features_shard"]
    assert "slurm_account=" in resources["train_exits"]  # the cluster profile's defaults stay


def _tiny_imagenet(root, classes=3, train=6, val=3, seed=0):
    """An ImageNet-layout folder: train/ and val/, one sub-folder of small JPEGs per class."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for label in range(classes):
            folder = root / split / f"n{label:08d}"
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                pixels[..., label] = 255 - pixels[..., label] // 4  # a learnable colour cue
                Image.fromarray(pixels).save(folder / f"{index}.JPEG")


def test_tiny_imagenet_run_of_the_paper_rules(tmp_path):
    workdir = copy_repo(tmp_path / "repo")
    _tiny_imagenet(tmp_path / "imagenet")
    config = yaml.safe_load((REPO / PAPER).read_text())
    config["datasets"]["imagenet"].update(
        root=str(tmp_path / "imagenet"), num_classes=3, image_size=32
    )
    quick = config["models"]["convnextv2_atto"]  # the paper's quick model, untrained here
    quick.update(weights=None, exit_types=["mlp1x32", "mlp2x16"])
    quick["exit_training"].update(epochs=1, batch_size=9)  # the cache as in the paper
    quick["backbone_training"] = {"epochs": 1, "batch_size": 9}
    config["models"] = {"convnextv2_atto": quick}
    config["record"]["batch_size"] = 2  # every one of the 4 shards needs a batch (val: 9 images)
    config["search"].update(methods=["onepass", "circular"], peers=["global_threshold"])
    path = workdir / "config" / "test" / "paper_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, config="config/test/paper_tiny.yaml", timeout=1500)
    ran = by_rule(parse_jobs(result.stdout + result.stderr))
    for rule in ("prepare_data", "train_backbone", "cache_features_shard", "concat_features",
                 "train_exits", "record_shard", "concat_records", "macs_analysis",
                 "evaluate", "front", "plot", "summary", "bundle"):
        assert ran.get(rule, 0) >= 1, (rule, ran)
    out = workdir / "results" / "imagenet" / "convnextv2_atto"
    assert pl.read_parquet(out / "records" / "val.parquet").height == 9
    assert pl.read_parquet(out / "records" / "search.parquet").height == 18  # the training set
    onepass = pl.read_parquet(out / "search" / "onepass.parquet")
    assert onepass.get_column("lambda").n_unique() == 551  # every λ of the paper's grid
    assert pl.read_parquet(out / "front" / "onepass.parquet").height >= 1
