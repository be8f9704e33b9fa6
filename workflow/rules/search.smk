rule search_dyce:
    input:
        get_library_inputs("search"),
        records="results/{dataset}/{model}/records/search.parquet",
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        "results/{dataset}/{model}/search/{method}.parquet",
    log:
        "logs/search/{dataset}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/search/{dataset}/{model}/{method}.tsv"
    wildcard_constraints:
        model=one_of(WHOLE_GRID_MODELS),
        method=one_of(DYCE_METHODS),
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        upstream=get_upstream_digest("records"),
        lambdas=get_lambdas,
        options=get_search_options,
    shell:
        "dyce search {input.records} --macs-info {input.macs} --method {wildcards.method}"
        " --lambda {params.lambdas} {params.options} --model {wildcards.model}"
        " --dataset {wildcards.dataset} --no-progress --out {output} > {log} 2>&1"


rule search_chunk:
    input:
        get_library_inputs("search"),
        records="results/{dataset}/{model}/records/search.parquet",
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        temp("results/{dataset}/{model}/search/{method}/chunk_{chunk}.parquet"),
    log:
        "logs/search/{dataset}/{model}/{method}/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/search_chunk/{dataset}/{model}/{method}/chunk_{chunk}.tsv"
    wildcard_constraints:
        model=one_of(CHUNKED_MODELS),
        method=one_of(DYCE_METHODS),
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        upstream=get_upstream_digest("records"),
        lambdas=get_lambdas,
        options=get_search_options,
    shell:
        "dyce search {input.records} --macs-info {input.macs} --method {wildcards.method}"
        " --lambda {params.lambdas} {params.options} --model {wildcards.model}"
        " --dataset {wildcards.dataset} --no-progress --out {output} > {log} 2>&1"


rule search_merge:
    input:
        get_library_inputs("merge-search"),
        chunks=get_search_chunks,
    output:
        "results/{dataset}/{model}/search/{method}.parquet",
    log:
        "logs/search/{dataset}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/search/{dataset}/{model}/{method}.tsv"
    wildcard_constraints:
        model=one_of(CHUNKED_MODELS),
        method=one_of(DYCE_METHODS),
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        upstream=get_upstream_digest("records"),
    shell:
        "dyce merge-search {input.chunks} --out {output} > {log} 2>&1"


rule search_peer:
    input:
        get_library_inputs("search"),
        records="results/{dataset}/{model}/records/search.parquet",
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        "results/{dataset}/{model}/search/{method}.parquet",
    log:
        "logs/search/{dataset}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/search/{dataset}/{model}/{method}.tsv"
    wildcard_constraints:
        method=one_of(PEER_METHODS),
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        upstream=get_upstream_digest("records"),
    shell:
        "dyce search {input.records} --macs-info {input.macs} --method {wildcards.method}"
        " --model {wildcards.model} --dataset {wildcards.dataset} --no-progress"
        " --out {output} > {log} 2>&1"


rule evaluate:
    input:
        get_library_inputs("evaluate"),
        results="results/{dataset}/{model}/search/{method}.parquet",
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
        upstream=get_upstream_digest("search"),
    shell:
        "dyce evaluate {input.results} --records {input.records} --macs-info {input.macs}"
        " --out {output} > {log} 2>&1"


rule front:
    input:
        get_library_inputs("front"),
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
        upstream=get_upstream_digest("search"),
    shell:
        "dyce front {input.table} --out {output.table} --csv {output.csv} > {log} 2>&1"
