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
        " {params.training} --cpus {threads} --out {output} > {log} 2>&1"


rule train_exits:
    input:
        get_library_inputs("train-exits"),
        unpack(get_backbone_input),
        unpack(get_feature_input),
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
        features=get_features_option,
    shell:
        "dyce train-exits --data {input.data} --model {params.architecture} {params.backbone}"
        " --taps {params.taps} --exit-types {params.exit_types} {params.training}"
        " {params.features} --cpus {threads} --out {output} > {log} 2>&1"


rule cache_features:
    input:
        get_library_inputs("cache-features"),
        unpack(get_backbone_input),
        data="results/{dataset}/splits.json",
    output:
        directory("results/{dataset}/{model}/features/{split}"),
    log:
        "logs/cache_features/{dataset}/{model}/{split}.log",
    benchmark:
        "results/benchmarks/cache_features/{dataset}/{model}/{split}.tsv"
    wildcard_constraints:
        model=one_of(UNSHARDED_MODELS),
    conda:
        "../envs/dyce.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        upstream=get_upstream_digest("features"),
        architecture=lambda wildcards: get_architecture(wildcards.model),
        backbone=get_backbone_option,
        taps=lambda wildcards: get_model_spec(wildcards.model)["taps"],
        dtype=get_feature_dtype,
        options=get_record_options,
    shell:
        "dyce cache-features --data {input.data} --model {params.architecture}"
        " {params.backbone} --taps {params.taps} --split {wildcards.split}"
        " --dtype {params.dtype} {params.options} --cpus {threads} --out {output}"
        " > {log} 2>&1"


rule cache_features_shard:
    input:
        get_library_inputs("cache-features"),
        unpack(get_backbone_input),
        data="results/{dataset}/splits.json",
    output:
        temp(
            directory(
                "results/{dataset}/{model}/features/{split}.shard{shard}of{shards}"
            )
        ),
    log:
        "logs/cache_features/{dataset}/{model}/{split}.shard{shard}of{shards}.log",
    benchmark:
        "results/benchmarks/cache_features/{dataset}/{model}/{split}.shard{shard}of{shards}.tsv"
    wildcard_constraints:
        model=one_of(SHARDED_MODELS),
    conda:
        "../envs/dyce.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        upstream=get_upstream_digest("features"),
        architecture=lambda wildcards: get_architecture(wildcards.model),
        backbone=get_backbone_option,
        taps=lambda wildcards: get_model_spec(wildcards.model)["taps"],
        dtype=get_feature_dtype,
        options=get_record_options,
    shell:
        "dyce cache-features --data {input.data} --model {params.architecture}"
        " {params.backbone} --taps {params.taps} --split {wildcards.split}"
        " --dtype {params.dtype} {params.options} --shard {wildcards.shard}/{wildcards.shards}"
        " --cpus {threads} --out {output} > {log} 2>&1"


rule concat_features:
    input:
        get_library_inputs("concat-features"),
        shards=get_feature_shard_dirs,
    output:
        directory("results/{dataset}/{model}/features/{split}"),
    log:
        "logs/cache_features/{dataset}/{model}/{split}.log",
    benchmark:
        "results/benchmarks/cache_features/{dataset}/{model}/{split}.tsv"
    wildcard_constraints:
        model=one_of(SHARDED_MODELS),
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "dyce concat-features {input.shards} --out {output} > {log} 2>&1"
