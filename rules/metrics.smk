# Stage: metrics. Every variant against the reference on the same prompts and seeds.


rule metrics_variant:
    input:
        variant=lambda wc: variant_shards(wc.variant, wc.model),
        reference=lambda wc: variant_shards(REFERENCE, wc.model),
    output:
        "results/metrics/{model}/per_image/{variant}.csv",
    params:
        reference=REFERENCE,
    log:
        "logs/metrics/{model}/{variant}.log",
    benchmark:
        "results/benchmarks/metrics/{model}/{variant}.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/metrics.yaml"
    script:
        "../scripts/metrics_variant.py"


rule metrics_summary:
    input:
        per_image=expand("results/metrics/{{model}}/per_image/{variant}.csv", variant=VARIANTS),
        shards=lambda wc: [d for v in VARIANTS for d in variant_shards(v, wc.model)],
    output:
        summary="results/metrics/{model}/summary.csv",
        timing="results/metrics/{model}/timing.csv",
    params:
        variants=VARIANTS,
        reference=REFERENCE,
        confidence=config["metrics"]["confidence"],
        resamples=config["metrics"]["bootstrap_resamples"],
        seed=config["seed"],
    log:
        "logs/metrics/{model}/summary.log",
    conda:
        "../envs/metrics.yaml"
    script:
        "../scripts/metrics_summary.py"
