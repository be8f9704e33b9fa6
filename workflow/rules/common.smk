"""Helpers of the dyce workflow: config checks, target lists, input functions, params."""

import ast
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

REPO = Path(workflow.basedir).parent
# Jobs call the dyce command on PATH (e.g. of the conda environment with --sdm conda), else the
# one of the environment that runs Snakemake (e.g. .venv/bin, also when it is not activated).
shell.prefix(
    "set -euo pipefail; command -v dyce > /dev/null"
    f' || export PATH="{Path(sys.executable).parent}:$PATH"; '
)
LIBRARY = REPO / "dyce"
DYCE_METHODS = ("onepass", "circular", "samethres")
PEER_METHODS = ("global_threshold", "msdnet", "patience")
# Classes and input size of the datasets whose facts are fixed (imagefolder: from the config).
DATASET_FACTS = {
    "digits": {"num_classes": 10, "input_size": 8, "in_channels": 1},
    "cifar10": {"num_classes": 10, "input_size": 32, "in_channels": 3},
    "cifar100": {"num_classes": 100, "input_size": 32, "in_channels": 3},
    "imagefolder": {"input_size": 224, "in_channels": 3},
}


wildcard_constraints:
    dataset="|".join(DATASET_FACTS),
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    split="train|search|val",
    lam="[0-9]+(\\.[0-9]+)?",


# --------------------------------------------------------------------------- config checks


def config_error(key, message):
    """Stop the workflow before any job runs, naming the config key."""
    raise WorkflowError(f"Invalid config: {key}: {message}")


def _small_model_names(source):
    """Names in ``SMALL_RESNET_BLOCKS`` of dyce/network/models.py, read without importing torch."""
    for node in ast.parse(source.read_text()).body:
        target = (
            getattr(node, "target", None)
            or (getattr(node, "targets", None) or [None])[0]
        )
        if getattr(target, "id", None) == "SMALL_RESNET_BLOCKS":
            return set(ast.literal_eval(node.value))
    return set()


def unknown_architectures(names):
    """``(unknown, known)``: those of ``names`` that dyce.network.models cannot build, and the names it
    can (torch is imported only for names other than the small ResNets)."""
    source = LIBRARY / "network" / "models.py"
    names = set(names) - (_small_model_names(source) if source.exists() else set())
    if not names or not source.exists():
        return [], []
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import dyce.network.models

    known = set(dyce.network.models.available_models())
    return sorted(names - known), sorted(known)


def check_config():
    """Cross-key checks that the JSON schema cannot express."""
    for model, spec in config["models"].items():
        if spec["dataset"] not in config["datasets"]:
            config_error(
                f"models.{model}.dataset",
                f"unknown dataset '{spec['dataset']}' (configured: "
                f"{', '.join(config['datasets'])})",
            )
        dataset = spec["dataset"]
        if "num_classes" not in {
            **DATASET_FACTS[dataset],
            **config["datasets"][dataset],
        }:
            config_error(f"datasets.{dataset}.num_classes", "required for this dataset")
        if not methods(model):
            config_error(f"models.{model}.search", "no search method or peer selected")
        if search_setting(model, "methods") and not lambdas(model):
            config_error(f"models.{model}.search.lambdas", "the λ range is empty")
    for model in config["models"]:
        if config["bundle"]["enabled"] and not bundle_methods(model):
            config_error(f"models.{model}.search.methods", "no DyCE method to bundle")
        for method in config["bundle"]["methods"] or []:
            if method not in search_setting(model, "methods"):
                config_error(
                    "bundle.methods", f"'{method}' is not searched for model '{model}'"
                )
    if workflow.is_main_process:
        unknown, known = unknown_architectures(map(architecture, config["models"]))
        for model in config["models"]:
            if architecture(model) in unknown:
                config_error(
                    f"models.{model}.architecture",
                    f"unknown model '{architecture(model)}' (known: {', '.join(known)})",
                )


# --------------------------------------------------------------------------- config lookups


def model_spec(model):
    return config["models"][model]


def architecture(model):
    """The dyce model name of ``model`` (its key unless ``architecture`` is set)."""
    return model_spec(model).get("architecture", model)


def dataset_of(model):
    return model_spec(model)["dataset"]


def dataset_fact(model, key):
    """Classes, input size or channels of the model's dataset (config overrides the table)."""
    dataset = dataset_of(model)
    facts = {**DATASET_FACTS[dataset], **config["datasets"][dataset]}
    if key == "input_size" and "image_size" in facts:
        return facts["image_size"]
    return facts[key]


def search_setting(model, key):
    """A search setting of ``model``: its own ``search`` block, else the global one."""
    return model_spec(model).get("search", {}).get(key, config["search"][key])


def format_lambda(value):
    """λ as it appears in file names: 0.5, 0.51, 1.0."""
    text = f"{round(float(value), 6):.6f}".rstrip("0")
    return f"{text}0" if text.endswith(".") else text


def lambdas(model):
    """The λ values of ``model`` as file-name strings (range end inclusive)."""
    grid = search_setting(model, "lambdas")
    if isinstance(grid, list):
        values = grid
    else:
        count = int(round((grid["stop"] - grid["start"]) / grid["step"] + 1e-9)) + 1
        values = [grid["start"] + i * grid["step"] for i in range(max(count, 0))]
    return sorted({format_lambda(value) for value in values}, key=float)


def bundle_methods(model):
    """Methods whose fronts go into the model's runtime bundle."""
    return config["bundle"]["methods"] or list(search_setting(model, "methods"))


def prepare_options(wildcards):
    """Options of ``dyce prepare-data`` from ``datasets.<name>``."""
    spec = config["datasets"][wildcards.dataset]
    options = [
        f"--seed {spec['seed']}",
        f"--val-fraction {spec['val_fraction']}",
        f"--search-split {spec['search_split']}",
    ]
    if spec["search_split"] == "heldout":
        options.append(f"--search-fraction {spec['search_fraction']}")
    if "image_size" in spec:
        options.append(f"--image-size {spec['image_size']}")
    if spec["root"] is not None:
        options.append(f"--root {spec['root']}")
    if spec["download"]:
        options.append("--download")
    return " ".join(options)


def training_flags(model, key):
    """Training flags of ``models.<model>.<key>`` (backbone_training or exit_training)."""
    return cli_flags(model_spec(model).get(key, {}))


def cli_flags(settings):
    """``{"batch_size": 64}`` → ``--batch-size 64`` (training flags of the dyce commands)."""
    return " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in sorted(settings.items())
    )


# --------------------------------------------------------------------------- provenance


def _settings(model, stage):
    """The config a stage's output depends on, upstream stages included."""
    spec = model_spec(model)
    if stage == "data":
        return config["datasets"][dataset_of(model)]
    if stage == "backbone":
        return {
            "data": _settings(model, "data"),
            "architecture": architecture(model),
            "weights": spec["weights"],
            "training": spec.get("backbone_training", {}),
        }
    if stage == "exits":
        return {
            "backbone": _settings(model, "backbone"),
            "taps": spec["taps"],
            "exit_types": spec["exit_types"],
            "training": spec.get("exit_training", {}),
        }
    if stage == "records":
        return {"exits": _settings(model, "exits"), "topk": config["record"]["topk"]}
    if stage == "search":
        return {
            "records": _settings(model, "records"),
            "normalize": search_setting(model, "normalize"),
            "calibration": search_setting(model, "calibration"),
            "candidates": search_setting(model, "candidates"),
        }
    raise ValueError(f"unknown stage {stage}")


def provenance(stage):
    """A param function: digest of the config behind a stage's output, upstream included.

    Snakemake's params trigger then reruns a stage whenever anything upstream of it changed,
    even when an intermediate file is gone (e.g. a rerun of an upstream job was killed and
    Snakemake removed its output): mtimes alone would leave the stale downstream files.
    """

    def digest(wildcards):
        text = json.dumps(_settings(wildcards.model, stage), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    return digest


# --------------------------------------------------------------------------- library sources


def _command_modules():
    """Map each dyce subcommand to the CLI module that defines it."""
    commands = {}
    for path in sorted((LIBRARY / "cli").glob("*.py")):
        for name in re.findall(
            r"add_parser\(\s*[\"']([a-z0-9-]+)[\"']", path.read_text()
        ):
            commands[name] = path
    return commands


COMMAND_MODULES = _command_modules()


def library(command, *modules):
    """Library files a stage's output depends on: its CLI module and the given modules
    (paths below ``dyce/`` without ``.py``, e.g. ``network/models``).

    Declared as inputs, so a change to one of them reruns exactly the stages that use it.
    Modules not (yet) present are left out.
    """
    paths = [LIBRARY / f"{name}.py" for name in ("errors", "io", *modules)]
    if command in COMMAND_MODULES:
        paths.append(COMMAND_MODULES[command])
    return sorted(
        {
            os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
            for path in paths
            if path.exists()
        }
    )


# --------------------------------------------------------------------------- paths


def model_dir(model):
    return f"results/{dataset_of(model)}/{model}"


def backbone_input(wildcards):
    """The trained backbone when the model has no pretrained weights, else nothing."""
    if model_spec(wildcards.model)["weights"] is None:
        return {"backbone": f"{model_dir(wildcards.model)}/backbone.pt"}
    return {}


def backbone_option(wildcards, input):
    if model_spec(wildcards.model)["weights"] is None:
        return f"--backbone {input.backbone}"
    return f"--weights {model_spec(wildcards.model)['weights']}"


def search_outputs(model, method):
    """Search tables of one model and method: one per λ, or one sweep for a peer strategy."""
    base = f"{model_dir(model)}/search/{method}"
    if method in DYCE_METHODS:
        return [f"{base}/lambda_{lam}.parquet" for lam in lambdas(model)]
    return [f"{base}/sweep.parquet"]


def methods(model):
    """Every searched method of ``model``: DyCE methods first, then peers."""
    return list(search_setting(model, "methods")) + list(search_setting(model, "peers"))


def search_results(wildcards):
    return search_outputs(wildcards.model, wildcards.method)


def model_fronts(model):
    return [f"{model_dir(model)}/front/{method}.parquet" for method in methods(model)]


def fronts(wildcards):
    return model_fronts(wildcards.model)


def all_fronts():
    return [path for model in config["models"] for path in model_fronts(model)]


def bundle_fronts(wildcards):
    return [
        f"{model_dir(wildcards.model)}/front/{method}.parquet"
        for method in bundle_methods(wildcards.model)
    ]


def search_options(wildcards):
    """Normalisation, calibration and candidate-set flags of ``dyce search`` for one model."""
    options = []
    if not search_setting(wildcards.model, "normalize"):
        options.append("--no-normalize")
    if search_setting(wildcards.model, "calibration"):
        options.append("--calibration")
    if wildcards.method in ("onepass", "circular"):
        options.append(f"--candidates {search_setting(wildcards.model, 'candidates')}")
    return " ".join(options)


# --------------------------------------------------------------------------- targets


def record_targets():
    return [
        f"{model_dir(model)}/records/{split}.parquet"
        for model in config["models"]
        for split in config["record"]["splits"]
    ]


def macs_targets():
    return [f"{model_dir(model)}/macs_info.json" for model in config["models"]]


def search_targets():
    return [
        path
        for model in config["models"]
        for method in methods(model)
        for path in search_outputs(model, method)
    ]


def all_targets():
    """Everything the default pipeline produces."""
    targets = ["results/summary.csv", *record_targets(), *macs_targets()]
    for model in config["models"]:
        base = model_dir(model)
        targets += [f"{base}/pareto.png", f"{base}/summary.csv"]
        targets += [f"{base}/front/{method}.csv" for method in methods(model)]
        if config["bundle"]["enabled"]:
            targets.append(f"{base}/bundle.pt")
    return targets


check_config()
