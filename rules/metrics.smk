# Stage: metrics. Every variant against the reference on the same prompts and seeds.
# Per variant (one job): PSNR, SSIM, LPIPS against the reference image, CLIP score against the prompt.
# Per model (one job): FD-EffNetLite0 against the reference variant; FID against the reference and COCO,
# Inception Score (metrics.distribution picks the families). See docs/metrics.md.


rule metrics_variant:
    input:
        variant=lambda wc: variant_shards(wc.variant, wc.model),
        reference=lambda wc: variant_shards(REFERENCE, wc.model),
        prompts=prompts_csv(),
    output:
        "results/metrics/{model}/per_image/{variant}.csv",
    params:
        reference=REFERENCE,
        config=metrics_settings(per_image=True),
    threads: config["threads"]
    log:
        "logs/metrics/{model}/{variant}.log",
    benchmark:
        "results/benchmarks/metrics/{model}/{variant}.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
        gpu=gpu_resources(),
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
        timing=report("results/metrics/{model}/timing.csv", category="Tables", caption="../report/tables.rst"),
        differences=report(
            "results/metrics/{model}/differences.csv", category="Tables", caption="../report/tables.rst"
        ),
    params:
        variants=VARIANTS,
        reference=REFERENCE,
        confidence=config["metrics"]["confidence"],
        resamples=config["metrics"]["bootstrap_resamples"],
        equivalence=config["metrics"]["equivalence"],
        seed=config["seed"],
    log:
        "logs/metrics/{model}/summary.log",
    conda:
        "../envs/metrics.yaml"
    script:
        "../scripts/metrics_summary.py"


rule metrics_distribution:
    input:
        shards=lambda wc: [d for v in VARIANTS for d in variant_shards(v, wc.model)],
        prompts=prompts_csv(),
    output:
        "results/metrics/{model}/distribution.csv",
    params:
        variants=VARIANTS,
        reference=REFERENCE,
        config=metrics_settings(),
        confidence=config["metrics"]["confidence"],
        resamples=config["metrics"]["bootstrap_resamples"],
        seed=config["seed"],
    threads: config["threads"]
    log:
        "logs/metrics/{model}/distribution.log",
    benchmark:
        "results/benchmarks/metrics/{model}/distribution.tsv"
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=gpu_resources(),
    conda:
        "../envs/metrics.yaml"
    script:
        "../scripts/metrics_distribution.py"
