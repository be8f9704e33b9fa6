"""The Snakemake workflow for real, on the tiny config, in a temporary copy of the repository.

One base run (module fixture) builds every result; the other tests ask Snakemake what a change
would rerun (dry run) and check that it is exactly the affected branch of the DAG.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
import yaml

from dyce.cli.import_closure import import_closure
from dyce.cli.workflow import command_modules

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = "config/test/tiny.yaml"
COPIED = ("workflow", "config", "dyce", "pyproject.toml")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")

pytestmark = pytest.mark.xdist_group("workflow")


def copy_repo(dest: Path) -> Path:
    """The files the workflow needs, copied to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=IGNORED)
        else:
            shutil.copy2(source, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, config: str = TINY, timeout: float = 900,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run the venv's snakemake in ``workdir`` (jobs import the copy's dyce package)."""
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    cmd = [SNAKEMAKE, "--cores", "2", "--configfile", config, *args]
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-6000:]}")
    return result


JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")


def parse_jobs(text: str) -> list[tuple[str, str]]:
    """``(rule, first output)`` of every job Snakemake printed (``all`` left out)."""
    jobs, rule = [], None
    for line in text.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            rule = header.group(1)
        elif rule is not None and line.startswith("    output: "):
            if rule != "all":
                jobs.append((rule, line[len("    output: "):].split(", ")[0]))
            rule = None
    return jobs


def parse_job_details(text: str) -> list[dict[str, str | list[str]]]:
    """Rule, inputs, first output, reason and shell command of every job of a
    ``--dry-run --printshellcmds`` (``all`` left out)."""
    jobs, job = [], None
    for line in text.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            job = {"rule": header.group(1), "inputs": [], "reason": ""}
        elif job is not None and line.startswith("    input: "):
            job["inputs"] = line[len("    input: "):].split(", ")
        elif job is not None and line.startswith("    output: "):
            job["output"] = line[len("    output: "):].split(", ")[0]
        elif job is not None and line.startswith("    reason: "):
            job["reason"] = line[len("    reason: "):]
        elif job is not None and line.startswith("Shell command: "):
            if job["rule"] != "all":
                jobs.append({**job, "shell": line[len("Shell command: "):]})
            job = None
    return jobs


def library_closure(workdir: Path, shell: str) -> set[str]:
    """The dyce files the command of ``shell`` imports (static closure, relative paths)."""
    command = re.match(r"dyce ([a-z-]+) ", shell).group(1)
    closure = import_closure(workdir / "dyce", ["dyce.cli", command_modules()[command]])
    return {str(path.relative_to(workdir)) for path in closure}


def shell_rules() -> set[str]:
    """Rules of workflow/rules/*.smk that run a command."""
    rules = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        parts = re.split(r"^rule (\w+):\n", path.read_text(), flags=re.MULTILINE)
        rules |= {name for name, body in zip(parts[1::2], parts[2::2], strict=True)
                  if "    shell:" in body}
    return rules


def planned(workdir: Path, config: str = TINY) -> list[tuple[str, str]]:
    """Jobs a run would execute now (dry run)."""
    result = snakemake(workdir, "--dry-run", config=config)
    return parse_jobs(result.stdout + result.stderr)


def model_of(output: str) -> str | None:
    """``results/<dataset>/<model>/…`` → model; None for per-dataset or global outputs."""
    parts = Path(output).parts
    return parts[2] if len(parts) > 3 else None


def by_rule(jobs, model: str | None = "*") -> dict[str, int]:
    """Count jobs per rule, for one model (``"*"``: all)."""
    counts: dict[str, int] = {}
    for rule, output in jobs:
        if model == "*" or model_of(output) == model:
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def write_config(workdir: Path, name: str, change) -> str:
    """A changed copy of the tiny config; returns its path relative to ``workdir``."""
    config = yaml.safe_load((workdir / TINY).read_text())
    change(config)
    path = workdir / "config" / "test" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path.relative_to(workdir))


@pytest.fixture(scope="module")
def tiny():
    """The tiny config as a dict."""
    return yaml.safe_load((REPO / TINY).read_text())


def branch(tiny: dict, model: str) -> dict[str, int]:
    """Jobs of one model's branch from exit training on, computed from the tiny config."""
    spec = tiny["models"][model]
    search = {**tiny["search"], **spec.get("search", {})}
    methods, peers = search["methods"], search["peers"]
    calibrated = tiny["datasets"][spec["dataset"]].get("calib_fraction", 0) > 0
    jobs = {
        "train_exits": 1,
        "record": len(tiny["record"]["splits"]),
        "search_dyce": len(methods),
        "search_peer": len(peers),
        "evaluate": len(methods) + len(peers),
        "front": len(methods) + len(peers),
        "plot": 1,
        "model_summary": 1,
        "bundle": 1 if tiny.get("bundle", {}).get("enabled", True) else 0,
        "select": 1 if calibrated else 0,
        "check_selection": 1 if calibrated else 0,
    }
    return {rule: count for rule, count in jobs.items() if count}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A copy of the repository in which the tiny workflow has run to completion."""
    workdir = copy_repo(tmp_path_factory.mktemp("workflow"))
    result = snakemake(workdir)
    return {"dir": workdir, "jobs": parse_jobs(result.stdout + result.stderr)}


# --------------------------------------------------------------------------- runs


@pytest.mark.slow
def test_base_run_builds_every_result_of_both_models(base, tiny):
    workdir = base["dir"]
    summary = pl.read_csv(workdir / "results" / "summary.csv")
    for model in tiny["models"]:
        rows = summary.filter(pl.col("model") == model)
        search = {**tiny["search"], **tiny["models"][model].get("search", {})}
        assert sorted(rows["method"].to_list()) == sorted(search["methods"] + search["peers"])
        assert (workdir / "results" / "digits" / model / "pareto.png").stat().st_size > 10_000
        for method in search["methods"]:
            front = pl.read_parquet(workdir / f"results/digits/{model}/front/{method}.parquet")
            assert front.height >= 1
            assert set(front["lambda"].to_list()) <= set(search["lambdas"])
        # Both views: the validation-picked figure and the configuration chosen on calib.
        choice = json.loads((workdir / f"results/digits/{model}/choice.json").read_text())
        assert sorted(choice) == sorted(search["methods"] + search["peers"])
        checked = pl.read_parquet(workdir / f"results/digits/{model}/choice_val.parquet")
        for row in rows.iter_rows(named=True):
            mine = checked.filter(pl.col("method") == row["method"]).row(0, named=True)
            assert row["selected_macs_saved"] == pytest.approx(mine["macs_saved"])
            assert row["selected_met_tolerance"] == mine["met_tolerance"]
            assert json.loads(mine["config"]) == choice[row["method"]]["config"]
    counts = by_rule(base["jobs"])
    assert counts["prepare_data"] == 1  # one dataset, shared by both models
    assert counts["train_backbone"] == 2 and counts["macs_analysis"] == 2
    assert list((workdir / "results" / "benchmarks" / "train_exits" / "digits").glob("*.tsv"))
    assert (workdir / "logs" / "train_exits" / "digits" / "a.log").stat().st_size > 0


@pytest.mark.slow
def test_second_run_does_nothing(base):
    result = snakemake(base["dir"])
    assert parse_jobs(result.stdout + result.stderr) == []
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_exit_training_change_reruns_only_that_models_branch(base, tiny):
    def change(config):
        config["models"]["a"]["exit_training"]["epochs"] = 2

    jobs = planned(base["dir"], write_config(base["dir"], "exits_changed", change))
    assert by_rule(jobs, "a") == branch(tiny, "a")
    assert by_rule(jobs, "b") == {}
    assert by_rule(jobs, None) == {"summary": 1}  # the all-models table


@pytest.mark.slow
def test_one_more_lambda_reruns_that_models_dyce_searches_only(base, tiny):
    def change(config):
        config["models"]["b"]["search"]["lambdas"] = tiny["search"]["lambdas"] + [0.95]

    jobs = planned(base["dir"], write_config(base["dir"], "one_more_lambda", change))
    assert sorted(jobs) == sorted([
        ("search_dyce", "results/digits/b/search/onepass.parquet"),
        ("evaluate", "results/digits/b/eval/onepass.parquet"),
        ("front", "results/digits/b/front/onepass.parquet"),
        ("plot", "results/digits/b/pareto.png"),
        ("model_summary", "results/digits/b/summary.csv"),
        ("summary", "results/summary.csv"),
        ("bundle", "results/digits/b/bundle.pt"),
        ("select", "results/digits/b/choice.json"),
        ("check_selection", "results/digits/b/choice_val.parquet"),
    ])


@pytest.mark.slow
def test_dataset_seed_change_reruns_everything_downstream(base):
    def change(config):
        config["datasets"]["digits"]["seed"] = 1

    jobs = planned(base["dir"], write_config(base["dir"], "seed_changed", change))
    everything_but_macs = sorted(job for job in base["jobs"] if job[0] != "macs_analysis")
    assert sorted(jobs) == everything_but_macs


@pytest.mark.slow
@pytest.mark.parametrize(("module", "expected"), [
    ("report/plots.py", {"plot": 2, "model_summary": 2, "summary": 1}),
    ("search/cuts.py", {"search_dyce": 3, "search_peer": 4, "evaluate": 7, "front": 7,
                       "plot": 2, "model_summary": 2, "summary": 1, "bundle": 2,
                       "select": 2, "check_selection": 2}),
])
def test_editing_a_module_reruns_exactly_the_jobs_that_import_it(base, module, expected):
    """The jobs whose command imports the module rerun for it; the rest of the plan is what
    depends on their outputs."""
    path = base["dir"] / "dyce" / module
    original, stat = path.read_text(), path.stat()
    try:
        path.write_text(original + "\n# changed\n")
        result = snakemake(base["dir"], "--dry-run", "--printshellcmds")
    finally:
        path.write_text(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    output = result.stdout + result.stderr
    assert by_rule(parse_jobs(output)) == expected
    jobs = parse_job_details(output)
    importing = {(job["rule"], job["output"]) for job in jobs
                 if f"dyce/{module}" in library_closure(base["dir"], job["shell"])}
    updated = {(job["rule"], job["output"]) for job in jobs
               if re.search(r"Updated input files: [^;]*dyce/", job["reason"])}
    assert importing and updated == importing
    assert planned(base["dir"]) == []


@pytest.mark.slow
def test_killed_job_leaves_nothing_accepted_and_is_redone(base, tmp_path, tiny):
    """SIGKILL a running train_exits job: no output survives, and the next run redoes it."""
    workdir = tmp_path / "killed"
    shutil.copytree(base["dir"], workdir, symlinks=True)
    config = write_config(workdir, "killed", lambda c: c["models"]["a"]["exit_training"].update(
        epochs=3))
    exits = workdir / "results" / "digits" / "a" / "exits.pt"
    log = workdir / "logs" / "train_exits" / "digits" / "a.log"
    log.unlink()
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    process = subprocess.Popen(
        [SNAKEMAKE, "--cores", "2", "--configfile", config],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        victim = None
        deadline = time.monotonic() + 300
        while victim is None and time.monotonic() < deadline and process.poll() is None:
            for child in psutil.Process(process.pid).children(recursive=True):
                try:
                    if "train-exits" in " ".join(child.cmdline()) and "bash" not in child.name():
                        victim = child
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.05)
        assert victim is not None, "train_exits never started"
        time.sleep(1.0)  # let it get half-way
        victim.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, output[-2000:]
    assert "train_exits" in output
    assert not exits.exists(), "a killed job left its output behind"
    after_kill = snakemake(workdir, "--dry-run", config=config)
    assert ("train_exits", "results/digits/a/exits.pt") in parse_jobs(
        after_kill.stdout + after_kill.stderr), (output[-3000:], after_kill.stdout[-3000:])
    result = snakemake(workdir, config=config)
    assert ("train_exits", "results/digits/a/exits.pt") in parse_jobs(result.stdout
                                                                       + result.stderr)
    assert exits.exists() and planned(workdir, config) == []


# --------------------------------------------------------------------------- library inputs


def test_every_rule_declares_exactly_the_import_closure_of_its_command(config_only):
    """A job's declared dyce files are the static import closure of its command's CLI module
    and of dyce.cli: nothing listed by hand, nothing missing, nothing else."""
    def chunked(config):
        config["models"]["a"].update(search={"lambda_chunks": 2})
        config["record"]["splits"] = ["train", "search", "val"]

    def sharded(config):
        chunked(config)
        config["record"]["shards"] = 3

    jobs = []
    for name, change in (("closure", chunked), ("closure_sharded", sharded)):
        config = write_config(config_only, name, change)
        result = snakemake(config_only, "--dry-run", "--printshellcmds", config=config)
        jobs += parse_job_details(result.stdout + result.stderr)
    for job in jobs:
        declared = {name for name in job["inputs"] if name.startswith("dyce/")}
        expected = library_closure(config_only, job["shell"])
        assert declared == expected, (job["rule"], sorted(declared ^ expected))
    assert {job["rule"] for job in jobs} == shell_rules()


# --------------------------------------------------------------------------- bad configs


@pytest.fixture(scope="module")
def config_only(tmp_path_factory):
    """A fresh copy with no results (to check that nothing runs)."""
    return copy_repo(tmp_path_factory.mktemp("config_only"))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda c: c["search"].update(lambdas=[-0.1, 0.9]), "['search']['lambdas'][0]"),
        (lambda c: c["search"].update(methods=["onepass", "greedy"]), "['search']['methods']"),
        (lambda c: c["models"]["a"].update(dataset="mnist"), "models.a.dataset"),
        (lambda c: c["datasets"].update(mnist={"seed": 0}), "datasets.mnist.kind"),
        (lambda c: c["datasets"].update(my_digits={"kind": "mnist"}),
         "['datasets']['my_digits']['kind']"),
        (lambda c: c["models"]["a"].update(architecture="resnet_9000"), "models.a.architecture"),
        (lambda c: c["models"]["b"]["exit_training"].update(epochs=0),
         "['models']['b']['exit_training']['epochs']"),
        (lambda c: c.update(colour="blue"), "colour"),
        (lambda c: c["search"].update(lambdas=[0.8, float("nan")]), "search.lambdas"),
        (lambda c: c["search"].update(lambdas={"start": 0, "stop": 1, "step": 1e-9}),
         "search.lambdas"),
        (lambda c: c["models"]["a"].setdefault("search", {}).update(
            lambdas={"start": 0, "stop": 1e308, "step": 1}), "models.a.search.lambdas"),
        (lambda c: c.setdefault("record", {}).update(topk=11), "record.topk"),
    ],
    ids=["negative-lambda", "unknown-method", "unknown-dataset-ref", "name-without-kind",
         "unknown-kind",
         "unknown-model", "zero-epochs", "unknown-key", "nan-lambda", "huge-grid",
         "huge-model-grid", "topk-above-classes"],
)
def test_bad_config_stops_before_any_job_naming_the_key(config_only, change, key, request):
    config = write_config(config_only, request.node.callspec.id, change)
    result = snakemake(config_only, config=config, check=False, timeout=300)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert key in message, message[-3000:]
    assert parse_jobs(message) == []
    assert not (config_only / "results").exists() and not (config_only / "logs").exists()


@pytest.mark.slow
def test_html_report_is_self_contained_with_plots_tables_and_captions(base):
    report = base["dir"] / "report.html"
    snakemake(base["dir"], "--report", str(report))
    html = report.read_text()
    assert len(html) > 100_000  # plots and tables are embedded
    for text in ("Pareto fronts", "Summaries", "pareto.png", "summary.csv",
                 "MACs saved at", "relative accuracy"):
        assert text in html, text
    # the summary tables are shown in the page (embedded HTML), one per model and one overall
    pages = [base64.b64decode(data).decode() for data in
             re.findall(r"data:text/html[^\"']*?;base64,([A-Za-z0-9+/=]+)", html)]
    tables = [page for page in pages if "<table>" in page and "<th>macs_saved</th>" in page]
    assert len(tables) == 3, len(tables)
    # the overview names each model's own methods (b searches onepass only); every caption
    # is valid reStructuredText (docutils marks errors as system messages)
    text = html.replace("\\n", " ").replace("\n", " ")
    assert "<strong>b</strong> (small_resnet8 on digits): DyCE methods onepass;" in text
    assert "system-message" not in html
    assert planned(base["dir"]) == []  # reporting changes nothing


def test_datasets_are_named_and_results_land_under_the_name(config_only):
    def change(config):
        config["datasets"] = {"mine": {**config["datasets"]["digits"], "kind": "digits"},
                              "digits": {"seed": 3}}
        config["models"]["a"]["dataset"] = "mine"

    config = write_config(config_only, "named", change)
    result = snakemake(config_only, "--dry-run", "--printshellcmds", config=config)
    output = result.stdout + result.stderr
    jobs = parse_jobs(output)
    assert ("prepare_data", "results/mine/splits.json") in jobs
    assert ("prepare_data", "results/digits/splits.json") in jobs
    assert {output for rule, output in jobs if model_of(output) == "a"} == {
        output for rule, output in jobs if output.startswith("results/mine/a/")}
    assert "dyce prepare-data --dataset digits --seed 0" in output
    assert "dyce prepare-data --dataset digits --seed 3" in output
    assert "--model a --dataset mine" in output


def test_lambda_chunks_split_the_grid_into_that_many_jobs_and_a_merge(config_only):
    def change(config):
        config["models"]["a"]["search"] = {"lambda_chunks": 2, "lambdas": [0.5, 0.6, 0.7]}

    result = snakemake(config_only, "--dry-run", "--printshellcmds",
                       config=write_config(config_only, "chunks", change))
    output = result.stdout + result.stderr
    jobs = parse_jobs(output)
    chunks = sorted(out for rule, out in jobs if rule == "search_chunk")
    assert chunks == [f"results/digits/a/search/{method}/chunk_{index}.parquet"
                      for method in ("circular", "onepass") for index in (0, 1)]
    assert sorted(out for rule, out in jobs if rule == "search_merge") == [
        "results/digits/a/search/circular.parquet", "results/digits/a/search/onepass.parquet"]
    assert [out for rule, out in jobs if rule == "search_dyce"] == [
        "results/digits/b/search/onepass.parquet"]
    grids = [re.search(r"--lambda ((?:[0-9.]+ )+)", line).group(1).strip()
             for line in output.splitlines() if "dyce search" in line and "--model a " in line
             and "--method onepass" in line or "--method circular" in line and "--model a " in line]
    assert sorted(grids) == ["0.5 0.6", "0.5 0.6", "0.7", "0.7"]


@pytest.mark.parametrize(
    ("target", "rules"),
    [
        ("records", {"prepare_data", "train_backbone", "cache_features", "train_exits",
                     "record"}),
        ("macs", {"macs_analysis"}),
        ("search", {"prepare_data", "train_backbone", "cache_features", "train_exits", "record",
                    "macs_analysis",
                    "search_dyce", "search_peer"}),
    ],
)
def test_named_targets_plan_only_what_they_need(config_only, target, rules):
    result = snakemake(config_only, "--dry-run", target)
    jobs = parse_jobs(result.stdout + result.stderr)
    assert {rule for rule, _ in jobs} == rules
    assert {model_of(output) for _, output in jobs} >= {"a", "b"}


def test_digits_exits_train_from_a_feature_cache_unless_switched_off(config_only):
    def change(config):
        config["models"]["b"]["exit_training"]["feature_cache"] = False
        config["record"]["splits"] = ["train", "search", "val"]

    result = snakemake(config_only, "--dry-run", "--printshellcmds",
                       config=write_config(config_only, "cache", change))
    output = result.stdout + result.stderr
    jobs = parse_jobs(output)
    assert [out for rule, out in jobs if rule == "cache_features"] == [
        "results/digits/a/features/train"]
    assert [out for rule, out in jobs if rule == "record_from_features"] == [
        "results/digits/a/records/train.parquet"]
    assert "results/digits/b/records/train.parquet" in [
        out for rule, out in jobs if rule == "record"]
    trainings = {re.search(r"--out results/digits/(\w)/exits.pt", line).group(1): line
                 for line in re.findall(r"dyce train-exits [^\n]*", output)}
    assert "--features results/digits/a/features/train" in trainings["a"]
    assert "--features" not in trainings["b"] and "feature" not in trainings["b"]


def test_record_shards_plan_batch_aligned_shard_jobs_and_a_join(config_only):
    def change(config):
        config["record"].update(shards=3, batch_size=64)

    result = snakemake(config_only, "--dry-run", "--printshellcmds",
                       config=write_config(config_only, "shards", change))
    output = result.stdout + result.stderr
    jobs = parse_jobs(output)
    counts = by_rule(jobs)
    # 2 models x 3 splits recorded through the network (search, calib, val), 3 shards each;
    # each model's cache pass (train) in 3 shards too
    assert counts["record_shard"] == 18 and counts["concat_records"] == 6
    assert counts["cache_features_shard"] == 6 and counts["concat_features"] == 2
    assert "record" not in counts and "cache_features" not in counts
    assert re.search(r"dyce concat-records results/digits/a/records/val.shard1of3.parquet "
                     r"results/digits/a/records/val.shard2of3.parquet "
                     r"results/digits/a/records/val.shard3of3.parquet "
                     r"--out results/digits/a/records/val.parquet", output)
    assert len(re.findall(r"--batch-size 64 --amp off --shard [123]/3", output)) == 24


@pytest.mark.slow
def test_sharded_recording_gives_the_files_of_one_job(base, tmp_path):
    """The base run's records, recorded again as 3 shard jobs per split and joined."""
    import shutil

    workdir = tmp_path / "repo"
    shutil.copytree(base["dir"], workdir, symlinks=True)
    records = sorted((workdir / "results" / "digits").glob("*/records/*.parquet"))
    one_job = {path: path.read_bytes() for path in records}
    for path in records:
        path.unlink()
    config = write_config(workdir, "sharded", lambda c: c["record"].update(shards=3))
    result = snakemake(workdir, "--printshellcmds", "records", config=config)
    counts = by_rule(parse_jobs(result.stdout + result.stderr))
    assert counts["record_shard"] == 3 * len(records)
    assert counts["concat_records"] == len(records) and "record" not in counts
    for path, content in one_job.items():
        assert path.read_bytes() == content, path
    assert not list((workdir / "results" / "digits").glob("*/records/*shard*"))  # temp()
