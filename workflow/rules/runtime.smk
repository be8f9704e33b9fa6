rule bundle:
    input:
        get_library_inputs("bundle"),
        unpack(get_bundle_calibration),
        exits="results/{dataset}/{model}/exits.pt",
        fronts=get_bundle_fronts,
        searched=get_bundle_searched,
        macs="results/{dataset}/{model}/macs_info.json",
    output:
        "results/{dataset}/{model}/bundle.pt",
    log:
        "logs/bundle/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/bundle/{dataset}/{model}.tsv"
    conda:
        "../envs/dyce.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        upstream=get_upstream_digest("search"),
        calibration=get_bundle_calibration_options,
    shell:
        "dyce bundle --exits {input.exits} --front {input.fronts} --searched {input.searched}"
        " --macs-info {input.macs} {params.calibration} --out {output} > {log} 2>&1"
