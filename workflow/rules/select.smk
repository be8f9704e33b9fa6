rule select:
    input:
        get_library_inputs("select"),
        tables=get_select_tables,
        records="results/{dataset}/{model}/records/calib.parquet",
        search="results/{dataset}/{model}/records/search.parquet",
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        "results/{dataset}/{model}/choice.json",
    log:
        "logs/select/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/select/{dataset}/{model}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        upstream=get_upstream_digest("search"),
        tolerance=config["summary"]["tolerance"],
        delta=config["select"]["delta"],
        loss=config["select"]["loss"],
    shell:
        "dyce select {input.tables} --records {input.records} --search-records {input.search}"
        " --macs-info {input.macs} --tolerance {params.tolerance} --delta {params.delta}"
        " --loss {params.loss} --out {output} > {log} 2>&1"


rule check_selection:
    input:
        get_library_inputs("evaluate"),
        choice="results/{dataset}/{model}/choice.json",
        records="results/{dataset}/{model}/records/val.parquet",
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        "results/{dataset}/{model}/choice_val.parquet",
    log:
        "logs/check_selection/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/check_selection/{dataset}/{model}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        upstream=get_upstream_digest("search"),
    shell:
        "dyce evaluate {input.choice} --records {input.records} --macs-info {input.macs}"
        " --no-progress --out {output} > {log} 2>&1"
