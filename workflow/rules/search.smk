rule search_lambda:
    input:
        library(
            "search",
            "records/format",
            "macs/info",
            "evaluate/exact",
            "search/cost",
            "search/cuts",
            "search/context",
            "search/calibrated",
            "search/curves",
            "search/fates",
            "search/onepass",
            "search/circular",
            "search/circular_reference",
            "search/methods",
            "search/candidates",
            "report/tables",
        ),
        records="results/{dataset}/{model}/records/search.parquet",
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        "results/{dataset}/{model}/search/{method}/lambda_{lam}.parquet",
    log:
        "logs/search/{dataset}/{model}/{method}/lambda_{lam}.log",
    benchmark:
        "results/benchmarks/search/{dataset}/{model}/{method}/lambda_{lam}.tsv"
    wildcard_constraints:
        method="|".join(DYCE_METHODS),
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        upstream=provenance("records"),
        options=search_options,
    shell:
        "dyce search {input.records} --macs-info {input.macs} --method {wildcards.method}"
        " --lambda {wildcards.lam} {params.options} --model {wildcards.model}"
        " --dataset {wildcards.dataset} --no-progress --out {output} > {log} 2>&1"


rule search_peer:
    input:
        library(
            "search",
            "records/format",
            "macs/info",
            "evaluate/exact",
            "evaluate/strategies",
            "report/tables",
        ),
        records="results/{dataset}/{model}/records/search.parquet",
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        "results/{dataset}/{model}/search/{method}/sweep.parquet",
    log:
        "logs/search/{dataset}/{model}/{method}/sweep.log",
    benchmark:
        "results/benchmarks/search/{dataset}/{model}/{method}/sweep.tsv"
    wildcard_constraints:
        method="|".join(PEER_METHODS),
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        upstream=provenance("records"),
    shell:
        "dyce search {input.records} --macs-info {input.macs} --method {wildcards.method}"
        " --model {wildcards.model} --dataset {wildcards.dataset} --no-progress"
        " --out {output} > {log} 2>&1"


rule evaluate:
    input:
        library(
            "evaluate",
            "records/format",
            "macs/info",
            "evaluate/exact",
            "evaluate/strategies",
            "report/tables",
        ),
        results=search_results,
        records="results/{dataset}/{model}/records/val.parquet",
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        "results/{dataset}/{model}/eval/{method}.parquet",
    log:
        "logs/evaluate/{dataset}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{model}/{method}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        upstream=provenance("search"),
    shell:
        "dyce evaluate {input.results} --records {input.records} --macs-info {input.macs}"
        " --out {output} > {log} 2>&1"


rule front:
    input:
        library("front", "report/tables"),
        table="results/{dataset}/{model}/eval/{method}.parquet",
    output:
        table="results/{dataset}/{model}/front/{method}.parquet",
        csv="results/{dataset}/{model}/front/{method}.csv",
    log:
        "logs/front/{dataset}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/front/{dataset}/{model}/{method}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        upstream=provenance("search"),
    shell:
        "dyce front {input.table} --out {output.table} --csv {output.csv} > {log} 2>&1"
