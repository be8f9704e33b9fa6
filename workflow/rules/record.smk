ruleorder: record_from_features > concat_records
ruleorder: record_from_features > record


rule record:
    input:
        get_library_inputs("record"),
        exits="results/{dataset}/{model}/exits.pt",
        data="results/{dataset}/splits.json",
    output:
        "results/{dataset}/{model}/records/{split}.parquet",
    log:
        "logs/record/{dataset}/{model}/{split}.log",
    benchmark:
        "results/benchmarks/record/{dataset}/{model}/{split}.tsv"
    wildcard_constraints:
        model=one_of(UNSHARDED_MODELS),
    conda:
        "../envs/dyce.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        upstream=get_upstream_digest("exits"),
        topk=config["record"]["topk"],
        options=get_record_options,
    shell:
        "dyce record --exits {input.exits} --data {input.data} --split {wildcards.split}"
        " --topk {params.topk} {params.options} --cpus {threads} --out {output} > {log} 2>&1"


rule record_shard:
    input:
        get_library_inputs("record"),
        exits="results/{dataset}/{model}/exits.pt",
        data="results/{dataset}/splits.json",
    output:
        temp("results/{dataset}/{model}/records/{split}.shard{shard}of{shards}.parquet"),
    log:
        "logs/record/{dataset}/{model}/{split}.shard{shard}of{shards}.log",
    benchmark:
        "results/benchmarks/record/{dataset}/{model}/{split}.shard{shard}of{shards}.tsv"
    wildcard_constraints:
        model=one_of(SHARDED_MODELS),
    conda:
        "../envs/dyce.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        upstream=get_upstream_digest("exits"),
        topk=config["record"]["topk"],
        options=get_record_options,
    shell:
        "dyce record --exits {input.exits} --data {input.data} --split {wildcards.split}"
        " --topk {params.topk} {params.options} --shard {wildcards.shard}/{wildcards.shards}"
        " --cpus {threads} --out {output} > {log} 2>&1"


rule concat_records:
    input:
        get_library_inputs("concat-records"),
        shards=get_record_shard_files,
    output:
        "results/{dataset}/{model}/records/{split}.parquet",
    log:
        "logs/record/{dataset}/{model}/{split}.log",
    benchmark:
        "results/benchmarks/record/{dataset}/{model}/{split}.tsv"
    wildcard_constraints:
        model=one_of(SHARDED_MODELS),
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "dyce concat-records {input.shards} --out {output} > {log} 2>&1"


rule record_from_features:
    input:
        get_library_inputs("record"),
        exits="results/{dataset}/{model}/exits.pt",
        data="results/{dataset}/splits.json",
        features="results/{dataset}/{model}/features/{split}",
    output:
        "results/{dataset}/{model}/records/{split}.parquet",
    log:
        "logs/record/{dataset}/{model}/{split}.log",
    benchmark:
        "results/benchmarks/record/{dataset}/{model}/{split}.tsv"
    wildcard_constraints:
        model=one_of(CACHED_MODELS),
        split="train",
    conda:
        "../envs/dyce.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        upstream=get_upstream_digest("exits"),
        topk=config["record"]["topk"],
        batch_size=config["record"]["batch_size"],
    shell:
        "dyce record --exits {input.exits} --data {input.data} --split {wildcards.split}"
        " --features {input.features} --topk {params.topk} --batch-size {params.batch_size}"
        " --cpus {threads} --out {output} > {log} 2>&1"


rule macs_analysis:
    input:
        get_library_inputs("macs"),
    output:
        "results/{dataset}/{model}/macs_info.json",
    log:
        "logs/macs_analysis/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/macs_analysis/{dataset}/{model}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        architecture=lambda wildcards: get_architecture(wildcards.model),
        input_size=lambda wildcards: get_dataset_fact(wildcards.model, "input_size"),
        in_channels=lambda wildcards: get_dataset_fact(wildcards.model, "in_channels"),
        num_classes=lambda wildcards: get_dataset_fact(wildcards.model, "num_classes"),
        taps=lambda wildcards: get_model_spec(wildcards.model)["taps"],
        exit_types=lambda wildcards: ",".join(
            get_model_spec(wildcards.model)["exit_types"]
        ),
    shell:
        "dyce macs --model {params.architecture} --input-size {params.input_size}"
        " --in-channels {params.in_channels} --num-classes {params.num_classes}"
        " --taps {params.taps} --exit-types {params.exit_types} --out {output} > {log} 2>&1"
