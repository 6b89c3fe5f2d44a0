# Stage: report. One HTML page (results/report/index.html); every figure it shows is declared with
# report(), so `snakemake --report report.zip` holds the whole study.


report: "../report/workflow.rst"


rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report/index.html",
        figures=report(
            directory("results/report/figures"),
            patterns=["{name}.png"],
            category="Figures",
            caption="../report/figures.rst",
        ),
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
