rule train_backbone:
    input:
        library("train-backbone", "data/splits", "network/models", "network/training"),
        data="results/{dataset}/splits.json",
    output:
        "results/{dataset}/{model}/backbone.pt",
    log:
        "logs/train_backbone/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/train_backbone/{dataset}/{model}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        upstream=provenance("data"),
        architecture=lambda wildcards: architecture(wildcards.model),
        training=lambda wildcards: training_flags(wildcards.model, "backbone_training"),
    shell:
        "dyce train-backbone --data {input.data} --model {params.architecture}"
        " {params.training} --out {output} > {log} 2>&1"


rule train_exits:
    input:
        library(
            "train-exits",
            "data/splits",
            "network/models",
            "network/exit_heads",
            "network/training",
        ),
        unpack(backbone_input),
        data="results/{dataset}/splits.json",
    output:
        "results/{dataset}/{model}/exits.pt",
    log:
        "logs/train_exits/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/train_exits/{dataset}/{model}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        upstream=provenance("backbone"),
        architecture=lambda wildcards: architecture(wildcards.model),
        backbone=backbone_option,
        taps=lambda wildcards: model_spec(wildcards.model)["taps"],
        exit_types=lambda wildcards: ",".join(model_spec(wildcards.model)["exit_types"]),
        training=lambda wildcards: training_flags(wildcards.model, "exit_training"),
    shell:
        "dyce train-exits --data {input.data} --model {params.architecture} {params.backbone}"
        " --taps {params.taps} --exit-types {params.exit_types} {params.training}"
        " --out {output} > {log} 2>&1"
