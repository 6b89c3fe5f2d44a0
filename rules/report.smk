# Stage: report. One HTML page (results/report/index.html) plus `snakemake --report` entries.


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
        command=RUN_COMMAND,
    log:
        "logs/report.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/make_report.py"


rule explore:
    input:
        summary=f"results/metrics/{MODEL}/summary.csv",
        timing=f"results/metrics/{MODEL}/timing.csv",
    output:
        "results/notebooks/variant_ranking.csv",
    params:
        reference=REFERENCE,
    log:
        notebook="results/notebooks/explore_variants.ipynb",
    conda:
        "../envs/notebook.yaml"
    notebook:
        "../notebooks/explore_variants.py.ipynb"
