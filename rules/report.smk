# Stage: report. One HTML page (results/report/index.html) plus `snakemake --report` entries.


def report_inputs(wildcards=None):
    """Named inputs of the report; later stages add theirs here."""
    return {
        "summary": f"results/metrics/{MODEL}/summary.csv",
        "timing": f"results/metrics/{MODEL}/timing.csv",
        "per_image": expand("results/metrics/{model}/per_image/{variant}.csv", model=MODEL, variant=VARIANTS),
        "shards": [d for v in VARIANTS for d in variant_shards(v)],
        "prompts": prompts_csv(),
        "quant_sizes": quant_workflow.sizes_inputs(config, MODEL),
    }


rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report/index.html",
        variants_fig=report("results/report/variants.png", category="Variants", caption="../report/variants.rst"),
        grid_fig=report("results/report/image_grid.png", category="Images", caption="../report/grid.rst"),
        summary_table=report("results/report/summary.csv", category="Tables", caption="../report/summary.rst"),
    params:
        config=config,
        command=" ".join(["snakemake"] + sys.argv[1:]) if sys.argv else "snakemake",
    log:
        "logs/report.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/make_report.py"
