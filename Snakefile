# sd-squeeze: what compression and acceleration do to Stable Diffusion, in one DAG.
#   snakemake --cores all                                   # embedded default, offline, CPU
#   snakemake --cores all --configfile config/sd15.yaml     # Stable Diffusion 1.5 on a GPU
# Stages live in rules/*.smk; the logic in src/sdsqueeze (tested under tests/).
from snakemake.utils import min_version

min_version("8.20")


# Each config/*.yaml is a complete experiment: given with --configfile it replaces config.yaml
# (further --configfile files are layered on top of the first, e.g. config/sweep-seed.yaml).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/prompts.smk"
include: "rules/generate.smk"
include: "rules/metrics.smk"
include: "rules/sweep.smk"
include: "rules/diffc.smk"
include: "rules/report.smk"
include: "rules/benchmark.smk"
include: "rules/calibration.smk"
include: "rules/quant.smk"


# The code a rule runs is part of its rerun trigger (rules/common.smk, docs/architecture.md).
add_code_params(workflow.rules)


rule all:
    default_target: True
    input:
        "results/report/index.html",


# Named targets for partial rebuilds: `snakemake --cores all prompts` and so on.
rule models:
    input:
        model_json(),


rule prompts_all:
    input:
        prompts_csv(),


rule generate_all:
    input:
        [d for v in VARIANTS for d in variant_shards(v)],


rule diffc_all:
    input:
        DIFFC_OUTPUTS,


rule metrics_all:
    input:
        f"results/metrics/{MODEL}/summary.csv",
        f"results/metrics/{MODEL}/distribution.csv",


# `explore` (rules/report.smk) runs notebooks/explore_variants.py.ipynb; needs the `notebook` extra.


localrules:
    all,
    models,
    prompts_all,
    generate_all,
    metrics_all,
    diffc_all,
    report,
    explore,
