rule train_backbone:
    input:
        get_library_inputs("train-backbone"),
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
        upstream=get_upstream_digest("data"),
        architecture=lambda wildcards: get_architecture(wildcards.model),
        training=lambda wildcards: get_training_flags(
            wildcards.model, "backbone_training"
        ),
    shell:
        "dyce train-backbone --data {input.data} --model {params.architecture}"
        " {params.training} --out {output} > {log} 2>&1"


rule train_exits:
    input:
        get_library_inputs("train-exits"),
        unpack(get_backbone_input),
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
        upstream=get_upstream_digest("backbone"),
        architecture=lambda wildcards: get_architecture(wildcards.model),
        backbone=get_backbone_option,
        taps=lambda wildcards: get_model_spec(wildcards.model)["taps"],
        exit_types=lambda wildcards: ",".join(
            get_model_spec(wildcards.model)["exit_types"]
        ),
        training=lambda wildcards: get_training_flags(wildcards.model, "exit_training"),
    shell:
        "dyce train-exits --data {input.data} --model {params.architecture} {params.backbone}"
        " --taps {params.taps} --exit-types {params.exit_types} {params.training}"
        " --out {output} > {log} 2>&1"
