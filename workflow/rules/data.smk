rule prepare_data:
    input:
        get_library_inputs("prepare-data"),
    output:
        "results/{dataset}/splits.json",
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        options=get_prepare_options,
    shell:
        "dyce prepare-data {params.options} --out {output}" " > {log} 2>&1"
