"""Lookups of the dyce workflow: config checks, wildcard constraints, paths, input functions."""

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from snakemake.exceptions import WorkflowError

REPO = Path(workflow.basedir).parent
# Jobs call the dyce command on PATH (e.g. of the conda environment with --sdm conda), else the
# one of the environment that runs Snakemake (e.g. .venv/bin, also when it is not activated).
shell.prefix(
    "set -euo pipefail; command -v dyce > /dev/null"
    f' || export PATH="{Path(sys.executable).parent}:$PATH"; '
)
DYCE_METHODS = ("onepass", "circular", "samethres")
PEER_METHODS = ("global_threshold", "msdnet", "patience")
# Classes and input size of each dataset kind whose facts are fixed (imagefolder: from the
# config), and whether exit training augments its images (then a feature cache is opt-in).
DATASET_KINDS = {
    "digits": {
        "num_classes": 10,
        "input_size": 8,
        "in_channels": 1,
        "augmented": False,
    },
    "digits_deformed": {
        "num_classes": 10,
        "input_size": 8,
        "in_channels": 1,
        "augmented": False,
    },
    "cifar10": {
        "num_classes": 10,
        "input_size": 32,
        "in_channels": 3,
        "augmented": True,
    },
    "cifar100": {
        "num_classes": 100,
        "input_size": 32,
        "in_channels": 3,
        "augmented": True,
    },
    "imagefolder": {"input_size": 224, "in_channels": 3, "augmented": True},
}
# Keys of exit_training that choose the workflow's path rather than train-exits flags.
FEATURE_CACHE_KEYS = ("feature_cache", "feature_dtype")


def config_error(key, message):
    """Stop the workflow before any job runs, naming the config key."""
    raise WorkflowError(f"Invalid config: {key}: {message}")


def one_of(names):
    """A wildcard regex matching exactly ``names`` (none: matching nothing)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


# --------------------------------------------------------------------------- config lookups


def get_model_spec(model):
    return config["models"][model]


def get_architecture(model):
    """The dyce backbone name of ``model`` (its key unless ``architecture`` is set)."""
    return get_model_spec(model).get("architecture", model)


def get_dataset(model):
    """The dataset name (a key of ``datasets``) of ``model``."""
    return get_model_spec(model)["dataset"]


def get_dataset_kind(dataset):
    """The dyce dataset kind of a configured dataset (its ``kind``, else its name)."""
    return config["datasets"][dataset].get("kind", dataset)


def get_dataset_fact(model, key):
    """Classes, input size or channels of the model's dataset (config overrides the kind)."""
    dataset = get_dataset(model)
    facts = {
        **DATASET_KINDS[get_dataset_kind(dataset)],
        **config["datasets"][dataset],
    }
    if key == "input_size" and "image_size" in facts:
        return facts["image_size"]
    return facts[key]


def get_search_setting(model, key):
    """A search setting of ``model``: its own ``search`` block, else the global one."""
    return get_model_spec(model).get("search", {}).get(key, config["search"][key])


def format_lambda(value):
    """λ as the search command gets it: 0.5, 0.51, 1.0 (the shortest text of the same float)."""
    return repr(float(value))


def get_lambdas_key(model):
    """The config key that sets ``model``'s λ grid (for error messages)."""
    if "lambdas" in get_model_spec(model).get("search", {}):
        return f"models.{model}.search.lambdas"
    return "search.lambdas"


def get_model_lambdas(model):
    """The λ grid of ``model`` as sorted strings: a range ``{start, stop, step}`` includes its
    end when the grid reaches it and steps in exact decimals (as ``dyce search --lambda-range``);
    non-finite values and grids above the library's maximum stop the workflow, naming the key.
    """
    grid = get_search_setting(model, "lambdas")
    key = get_lambdas_key(model)
    limit = WORKFLOW_INFO["max_lambdas"]
    if isinstance(grid, list):
        values = list(grid)
    else:
        bounds = [
            Decimal(repr(float(grid[name]))) for name in ("start", "stop", "step")
        ]
        if not all(bound.is_finite() for bound in bounds):
            config_error(key, f"{grid} holds a value that is not a finite number")
        start, stop, step = bounds
        count = int((stop - start) / step + Decimal("1e-9")) + 1 if stop >= start else 0
        if count > limit:
            config_error(
                key, f"{grid} has {count} λ values, more than the maximum {limit}"
            )
        values = [float(start + i * step) for i in range(count)]
    for value in values:
        if not math.isfinite(float(value)):
            config_error(key, f"λ = {value} is not a finite number")
    if len(values) > limit:
        config_error(key, f"{len(values)} λ values, more than the maximum {limit}")
    return sorted({format_lambda(value) for value in values}, key=float)


def get_lambda_chunks(model):
    """The model's λ grid in ``search.lambda_chunks`` contiguous parts (fewer if it is short)."""
    values = get_model_lambdas(model)
    count = min(get_search_setting(model, "lambda_chunks"), len(values))
    size, extra = divmod(len(values), count)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [values[bounds[i] : bounds[i + 1]] for i in range(count)]


def is_chunked(model):
    """Whether ``model``'s DyCE searches run as several λ chunks."""
    return len(get_lambda_chunks(model)) > 1


def get_methods(model):
    """Every searched method of ``model``: DyCE methods first, then peers."""
    return list(get_search_setting(model, "methods")) + list(
        get_search_setting(model, "peers")
    )


def get_bundle_methods(model):
    """Methods whose fronts go into the model's runtime bundle."""
    return config["bundle"]["methods"] or list(get_search_setting(model, "methods"))


def get_training_flags(model, key):
    """``models.<model>.<key>`` (backbone_training, exit_training) as command flags:
    ``{"batch_size": 64}`` → ``--batch-size 64``."""
    settings = get_model_spec(model).get(key, {})
    return " ".join(
        f"--{name.replace('_', '-')} {get_amp(value) if name == 'amp' else value}"
        for name, value in sorted(settings.items())
        if name not in FEATURE_CACHE_KEYS
    )


def get_amp(value):
    """``amp`` as the dyce flag value (YAML reads a bare ``off`` as false)."""
    return "off" if value is False else value


def uses_feature_cache(model):
    """Whether ``model``'s exits train from a feature cache of the train split."""
    choice = get_model_spec(model).get("exit_training", {}).get("feature_cache")
    if choice is None:
        return not DATASET_KINDS[get_dataset_kind(get_dataset(model))]["augmented"]
    return choice


def get_record_shards():
    """Shard jobs per recorded split and per feature-cache pass."""
    return config["record"]["shards"]


# --------------------------------------------------------------------------- facts of dyce


def load_workflow_info(architectures):
    """``dyce workflow-info`` of this checkout's package: each command's library files and
    which of ``architectures`` are known backbones."""
    command = [sys.executable, "-m", "dyce", "workflow-info"]
    command += [f"--architecture={name}" for name in sorted(set(architectures))]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise WorkflowError(f"dyce workflow-info failed:\n{result.stderr}")
    return json.loads(result.stdout)


WORKFLOW_INFO = load_workflow_info(
    get_architecture(model) for model in config["models"]
)


def get_library_inputs(command):
    """Package files the job of ``dyce <command>`` runs (the import closure of its CLI
    module and of dyce.cli), so that editing one reruns exactly the jobs that import it.
    """
    paths = [REPO / name for name in WORKFLOW_INFO["commands"][command]]
    return [
        os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
        for path in paths
    ]


# --------------------------------------------------------------------------- config checks


def check_config():
    """Cross-key checks that the JSON schema cannot express."""
    for dataset, spec in config["datasets"].items():
        if get_dataset_kind(dataset) not in DATASET_KINDS:
            config_error(
                f"datasets.{dataset}.kind",
                f"required: '{dataset}' is not a dataset kind, so set kind: to one of "
                f"{', '.join(DATASET_KINDS)}",
            )
    for model, spec in config["models"].items():
        dataset = spec["dataset"]
        if dataset not in config["datasets"]:
            config_error(
                f"models.{model}.dataset",
                f"unknown dataset '{dataset}' (configured: {', '.join(config['datasets'])})",
            )
        kind = get_dataset_kind(dataset)
        if "num_classes" not in {**DATASET_KINDS[kind], **config["datasets"][dataset]}:
            config_error(f"datasets.{dataset}.num_classes", f"required for kind {kind}")
        if not get_methods(model):
            config_error(f"models.{model}.search", "no search method or peer selected")
        if get_search_setting(model, "methods") and not get_model_lambdas(model):
            config_error(get_lambdas_key(model), "the λ range is empty")
        classes = {**DATASET_KINDS[kind], **config["datasets"][dataset]}.get(
            "num_classes"
        )
        if classes is not None and config["record"]["topk"] > classes:
            config_error(
                "record.topk",
                f"{config['record']['topk']} is more than the {classes} classes of dataset "
                f"'{dataset}' (model '{model}'): recording would fail after training",
            )
        if config["bundle"]["enabled"] and not get_bundle_methods(model):
            config_error(f"models.{model}.search.methods", "no DyCE method to bundle")
        for method in config["bundle"]["methods"] or []:
            if method not in get_search_setting(model, "methods"):
                config_error(
                    "bundle.methods", f"'{method}' is not searched for model '{model}'"
                )
        if get_architecture(model) in WORKFLOW_INFO["architectures"]["unknown"]:
            config_error(
                f"models.{model}.architecture",
                f"unknown model '{get_architecture(model)}' (known: "
                f"{', '.join(WORKFLOW_INFO['architectures']['known'])})",
            )


check_config()


wildcard_constraints:
    dataset=one_of(config["datasets"]),
    model=one_of(config["models"]),
    split="train|search|calib|val",
    chunk="[0-9]+",
    shard="[0-9]+",
    shards="[0-9]+",


# --------------------------------------------------------------------------- paths


def get_model_dir(model):
    return f"results/{get_dataset(model)}/{model}"


def get_search_table(model, method):
    """The search table of one model and method (a row per λ, or per peer parameter)."""
    return f"{get_model_dir(model)}/search/{method}.parquet"


def get_model_fronts(model):
    return [
        f"{get_model_dir(model)}/front/{method}.parquet"
        for method in get_methods(model)
    ]


def get_search_targets():
    return [
        get_search_table(model, method)
        for model in config["models"]
        for method in get_methods(model)
    ]


def get_record_targets():
    return [
        f"{get_model_dir(model)}/records/{split}.parquet"
        for model in config["models"]
        for split in config["record"]["splits"]
    ]


def get_macs_targets():
    return [f"{get_model_dir(model)}/macs_info.json" for model in config["models"]]


def get_all_fronts():
    return [path for model in config["models"] for path in get_model_fronts(model)]


def is_calibrated(model):
    """Whether ``model``'s dataset holds out a calib split (then ``dyce select`` runs)."""
    return config["datasets"][get_dataset(model)]["calib_fraction"] > 0


def get_selection_check(model):
    """The validation figures of the model's configurations chosen on calib (dyce select)."""
    return f"{get_model_dir(model)}/choice_val.parquet"


def get_all_targets():
    """Everything the default pipeline produces."""
    targets = ["results/summary.csv", *get_record_targets(), *get_macs_targets()]
    for model in config["models"]:
        base = get_model_dir(model)
        targets += [f"{base}/pareto.png", f"{base}/summary.csv"]
        if is_calibrated(model):
            targets += [f"{base}/choice.json", get_selection_check(model)]
        targets += [f"{base}/front/{method}.csv" for method in get_methods(model)]
        if config["bundle"]["enabled"]:
            targets.append(f"{base}/bundle.pt")
    return targets


# Models whose exits train from a feature cache (and whose train records come from it).
CACHED_MODELS = [model for model in config["models"] if uses_feature_cache(model)]
# Models whose recording and feature caching run as shard jobs and a join, or as one job.
SHARDED_MODELS = list(config["models"]) if get_record_shards() > 1 else []
UNSHARDED_MODELS = [model for model in config["models"] if model not in SHARDED_MODELS]

# Models whose DyCE searches run as one job per method, or as λ chunks and a merge.
WHOLE_GRID_MODELS = [model for model in config["models"] if not is_chunked(model)]
CHUNKED_MODELS = [model for model in config["models"] if is_chunked(model)]


# --------------------------------------------------------------------------- input functions


def get_fronts(wildcards):
    return get_model_fronts(wildcards.model)


def get_select_tables(wildcards):
    """Every searched method's table of one model (the candidates of dyce select)."""
    return [
        get_search_table(wildcards.model, method)
        for method in get_methods(wildcards.model)
    ]


def get_model_selection_checks(wildcards):
    """The model's checked selection, when its dataset has a calib split."""
    model = wildcards.model
    return [get_selection_check(model)] if is_calibrated(model) else []


def get_all_selection_checks():
    return [get_selection_check(m) for m in config["models"] if is_calibrated(m)]


def get_selected_option(wildcards, input):
    """``--selected`` of dyce summary: the checked selections among the inputs, if any."""
    return f"--selected {' '.join(input.selected)}" if input.selected else ""


def get_bundle_calibration(wildcards):
    """Calib and search records for the bundle's risk control, when there is a calib split."""
    if not is_calibrated(wildcards.model):
        return {}
    base = get_model_dir(wildcards.model)
    return {
        "calib": f"{base}/records/calib.parquet",
        "search": f"{base}/records/search.parquet",
    }


def get_bundle_calibration_options(wildcards, input):
    """``--calibration-records``/``--search-records`` of dyce bundle, when calibrated."""
    if not hasattr(input, "calib"):
        return ""
    return f"--calibration-records {input.calib} --search-records {input.search}"


def get_bundle_fronts(wildcards):
    return [
        f"{get_model_dir(wildcards.model)}/front/{method}.parquet"
        for method in get_bundle_methods(wildcards.model)
    ]


def get_bundle_searched(wildcards):
    """Every searched configuration of the bundled methods (evaluated), so that
    ``dyce predict --lambda`` runs the configuration searched for that λ."""
    return [
        f"{get_model_dir(wildcards.model)}/eval/{method}.parquet"
        for method in get_bundle_methods(wildcards.model)
    ]


def get_search_chunks(wildcards):
    """The λ chunk tables that make up one chunked search table."""
    count = len(get_lambda_chunks(wildcards.model))
    base = f"{get_model_dir(wildcards.model)}/search/{wildcards.method}"
    return [f"{base}/chunk_{index}.parquet" for index in range(count)]


def get_record_shard_files(wildcards):
    """The shard files that make up one sharded records file."""
    count = get_record_shards()
    base = f"{get_model_dir(wildcards.model)}/records/{wildcards.split}"
    return [f"{base}.shard{index}of{count}.parquet" for index in range(1, count + 1)]


def get_feature_shard_dirs(wildcards):
    """The shard folders that make up one sharded feature cache."""
    count = get_record_shards()
    base = f"{get_model_dir(wildcards.model)}/features/{wildcards.split}"
    return [f"{base}.shard{index}of{count}" for index in range(1, count + 1)]


def get_feature_input(wildcards):
    """The train split's feature cache when the model trains its exits from one."""
    if uses_feature_cache(wildcards.model):
        return {"features": f"{get_model_dir(wildcards.model)}/features/train"}
    return {}


def get_backbone_input(wildcards):
    """The trained backbone when the model has no pretrained weights, else nothing."""
    if get_model_spec(wildcards.model)["weights"] is None:
        return {"backbone": f"{get_model_dir(wildcards.model)}/backbone.pt"}
    return {}


# --------------------------------------------------------------------------- params


def get_lambdas(wildcards):
    """``--lambda`` values of one search job: the model's grid, or one chunk of it."""
    if hasattr(wildcards, "chunk"):
        return " ".join(get_lambda_chunks(wildcards.model)[int(wildcards.chunk)])
    return " ".join(get_model_lambdas(wildcards.model))


def get_search_options(wildcards):
    """Normalisation, calibration and candidate-set flags of ``dyce search`` for one model."""
    options = []
    if not get_search_setting(wildcards.model, "normalize"):
        options.append("--no-normalize")
    if get_search_setting(wildcards.model, "calibration"):
        options.append("--calibration")
    if wildcards.method in ("onepass", "circular"):
        candidates = get_search_setting(wildcards.model, "candidates")
        options.append(f"--candidates {candidates}")
    return " ".join(options)


def get_features_option(wildcards, input):
    return f"--features {input.features}" if uses_feature_cache(wildcards.model) else ""


def get_feature_dtype(wildcards):
    spec = get_model_spec(wildcards.model).get("exit_training", {})
    return spec.get("feature_dtype", "float32")


def get_record_options(wildcards):
    """Batch size and precision of ``dyce record`` and ``dyce cache-features``."""
    record = config["record"]
    return f"--batch-size {record['batch_size']} --amp {get_amp(record['amp'])}"


def get_backbone_option(wildcards, input):
    weights = get_model_spec(wildcards.model)["weights"]
    return f"--backbone {input.backbone}" if weights is None else f"--weights {weights}"


def get_prepare_options(wildcards):
    """Options of ``dyce prepare-data`` from ``datasets.<name>``."""
    spec = config["datasets"][wildcards.dataset]
    options = [
        f"--dataset {get_dataset_kind(wildcards.dataset)}",
        f"--seed {spec['seed']}",
        f"--val-fraction {spec['val_fraction']}",
        f"--search-split {spec['search_split']}",
    ]
    if spec["search_split"] == "heldout":
        options.append(f"--search-fraction {spec['search_fraction']}")
    if spec["calib_fraction"] > 0:
        options.append(f"--calib-fraction {spec['calib_fraction']}")
    if "copies" in spec:
        options.append(f"--copies {spec['copies']}")
    if "image_size" in spec:
        options.append(f"--image-size {spec['image_size']}")
    if spec["root"] is not None:
        options.append(f"--root {spec['root']}")
    if spec["download"]:
        options.append("--download")
    return " ".join(options)


def _stage_settings(model, stage):
    """The config a stage's output depends on, upstream stages included."""
    spec = get_model_spec(model)
    if stage == "data":
        return config["datasets"][get_dataset(model)]
    if stage == "backbone":
        return {
            "data": _stage_settings(model, "data"),
            "architecture": get_architecture(model),
            "weights": spec["weights"],
            "training": spec.get("backbone_training", {}),
        }
    if stage == "features":
        return {
            "backbone": _stage_settings(model, "backbone"),
            "taps": spec["taps"],
            "dtype": spec.get("exit_training", {}).get("feature_dtype", "float32"),
            "batch_size": config["record"]["batch_size"],
            "amp": get_amp(config["record"]["amp"]),
        }
    if stage == "exits":
        return {
            "backbone": _stage_settings(model, "backbone"),
            "taps": spec["taps"],
            "exit_types": spec["exit_types"],
            "training": spec.get("exit_training", {}),
            "features": (
                _stage_settings(model, "features")
                if uses_feature_cache(model)
                else None
            ),
        }
    if stage == "records":
        return {
            "exits": _stage_settings(model, "exits"),
            "topk": config["record"]["topk"],
            "batch_size": config["record"]["batch_size"],
            "amp": get_amp(config["record"]["amp"]),
        }
    if stage == "search":
        return {
            "records": _stage_settings(model, "records"),
            "normalize": get_search_setting(model, "normalize"),
            "calibration": get_search_setting(model, "calibration"),
            "candidates": get_search_setting(model, "candidates"),
        }
    raise ValueError(f"unknown stage {stage}")


def get_upstream_digest(stage):
    """A param function: digest of the config behind a stage's output, upstream included.

    Snakemake's params trigger then reruns a stage whenever anything upstream of it changed,
    even when an intermediate file is gone (e.g. a rerun of an upstream job was killed and
    Snakemake removed its output): mtimes alone would leave the stale downstream files.
    """

    def digest(wildcards):
        text = json.dumps(_stage_settings(wildcards.model, stage), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    return digest
