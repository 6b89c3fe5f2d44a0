# sd-squeeze: what compression and acceleration do to Stable Diffusion, in one DAG.
#   snakemake --cores all                                   # embedded default, offline, CPU
#   snakemake --cores all --configfile config/sd15.yaml     # Stable Diffusion 1.5 on a GPU
# Stages live in rules/*.smk; the logic in src/sdsqueeze (tested under tests/).
from snakemake.utils import min_version

min_version("8.20")


# Each config/*.yaml is a complete experiment: given with --configfile it replaces config.yaml
# (further --configfile files are layered on top of the first, e.g. config/sweep-compression-inference.yaml).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



# Stages in data-flow order: model and prompts, calibration sets (read by quantized variants'
# generation), students (read by their variants' generation), images, their metrics, the quantized UNets' sizes, the latent sweep, DiffC, the GPU
# benchmark, and last the report, which reads them all.
include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/prompts.smk"
include: "rules/calibration.smk"
include: "rules/distill.smk"
include: "rules/onnx.smk"
include: "rules/generate.smk"
include: "rules/metrics.smk"
include: "rules/quant.smk"
include: "rules/sweep.smk"
include: "rules/diffc.smk"
include: "rules/benchmark.smk"
include: "rules/report.smk"


# The code a rule runs is part of its rerun trigger (rules/common.smk, docs/architecture.md).
add_code_params(workflow.rules)


rule all:
    default_target: True
    input:
        "results/report/index.html",


# Named targets, one per stage (`snakemake --cores all <stage>_all`), in data-flow order.
rule models_all:
    input:
        model_json(),


rule prompts_all:
    input:
        prompts_csv(),


rule calibration_all:
    input:
        quant_workflow.all_calibration_files(config, MODEL),


rule generate_all:
    input:
        [d for v in VARIANTS for d in variant_shards(v)],


rule metrics_all:
    input:
        f"results/metrics/{MODEL}/summary.csv",
        f"results/metrics/{MODEL}/distribution.csv",


rule quant_all:
    input:
        quant_workflow.sizes_inputs(config, MODEL),


rule distill_all:
    input:
        DISTILL_OUTPUTS,


rule sweep_all:
    input:
        sweep_outputs(),


rule diffc_all:
    input:
        DIFFC_OUTPUTS,


# Not part of `all`: the GPU benchmark runs only when asked for.
rule benchmark_all:
    input:
        rules.accel_benchmark.output,


# `explore` (rules/report.smk) runs notebooks/explore_variants.py.ipynb; needs the `notebook` extra.


localrules:
    all,
    models_all,
    prompts_all,
    calibration_all,
    distill_all,
    generate_all,
    metrics_all,
    quant_all,
    sweep_all,
    diffc_all,
    benchmark_all,
    report,
    explore,
