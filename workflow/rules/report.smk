rule plot:
    input:
        get_library_inputs("plot"),
        fronts=get_fronts,
        records="results/{dataset}/{model}/records/val.parquet",
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        report(
            "results/{dataset}/{model}/pareto.png",
            caption="../report/pareto.rst",
            category="Pareto fronts",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
    log:
        "logs/plot/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/plot/{dataset}/{model}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        upstream=get_upstream_digest("search"),
        title=lambda wildcards: f"{wildcards.model} on {wildcards.dataset} (validation)",
        tolerance=config["summary"]["tolerance"],
    shell:
        "dyce plot {input.fronts} --records {input.records} --macs-info {input.macs}"
        " --title '{params.title}' --tolerance {params.tolerance} --out {output}"
        " > {log} 2>&1"


rule model_summary:
    input:
        get_library_inputs("summary"),
        fronts=get_fronts,
        selected=get_model_selection_checks,
    output:
        csv="results/{dataset}/{model}/summary.csv",
        html=report(
            "results/{dataset}/{model}/summary.html",
            caption="../report/model_summary.rst",
            category="Summaries",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
    log:
        "logs/model_summary/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/model_summary/{dataset}/{model}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        upstream=get_upstream_digest("search"),
        tolerance=config["summary"]["tolerance"],
        caption=lambda wildcards: f"{wildcards.model} on {wildcards.dataset}",
        selected=get_selected_option,
    shell:
        "dyce summary {input.fronts} --tolerance {params.tolerance} {params.selected}"
        " --out {output.csv} --html {output.html} --caption '{params.caption}' > {log} 2>&1"


rule summary:
    input:
        get_library_inputs("summary"),
        fronts=get_all_fronts(),
        selected=get_all_selection_checks(),
    output:
        csv="results/summary.csv",
        html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="Summaries",
            labels={"dataset": "all", "model": "all models"},
        ),
    log:
        "logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        tolerance=config["summary"]["tolerance"],
        selected=get_selected_option,
    shell:
        "dyce summary {input.fronts} --tolerance {params.tolerance} {params.selected}"
        " --out {output.csv} --html {output.html} --caption 'all models' > {log} 2>&1"
