rule prepare_data:
    input:
        library("prepare-data", "data/splits"),
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
        options=prepare_options,
    shell:
        "dyce prepare-data --dataset {wildcards.dataset} {params.options} --out {output}"
        " > {log} 2>&1"
