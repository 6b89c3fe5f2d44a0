# Shared set-up: config validation (before any job runs), path helpers, wildcard constraints.
import os
import sys

# The Snakefile imports the workflow's own package (scripts do the same via scripts/_srcpath.py).
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from sdsqueeze import config as sq_config  # noqa: E402
from sdsqueeze.prompts import n_shards  # noqa: E402
from sdsqueeze.quant import workflow as quant_workflow  # noqa: E402
from sdsqueeze.report.accel import committed_gpu_results  # noqa: E402
from sdsqueeze.variants import resolve_variant  # noqa: E402

try:
    sq_config.validate(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml"))
except sq_config.ConfigError as err:
    raise WorkflowError(str(err)) from None

MODEL = config["model"]["name"]
PROMPTSET = config["prompts"]["name"]
VARIANTS = sorted(config["variants"])
REFERENCE = config["reference"]
SHARDS = list(range(n_shards(config["prompts"]["n"], config["prompts"]["shard_size"])))
ON_GPU = config["device"] != "cpu"
# The command that reproduces this run, written into the report (CLI config files included).
RUN_COMMAND = " ".join(
    ["snakemake --cores all"]
    + [f"--configfile {os.path.relpath(c)}" for c in workflow.overwrite_configfiles]
)


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    promptset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    variant="|".join(map(lambda v: v.replace("+", r"\+").replace(".", r"\."), VARIANTS)),
    shard=r"\d+",


def model_json(model=MODEL):
    return f"resources/models/{model}/model.json"


def prompts_csv(promptset=PROMPTSET):
    return f"results/prompts/{promptset}.csv"


def shard_dir(variant, shard, model=MODEL):
    return f"results/images/{model}/{variant}/shard-{shard}"


def variant_shards(variant, model=MODEL):
    return [shard_dir(variant, s, model) for s in SHARDS]


def gpu_resources():
    """What a generation-class job asks of the scheduler: one GPU when the config runs on CUDA."""
    return 1 if ON_GPU else 0


def metrics_settings():
    """The config slice the metrics networks depend on (not the statistics' settings)."""
    statistics = ("confidence", "bootstrap_resamples", "equivalence")
    metrics = {k: v for k, v in config["metrics"].items() if k not in statistics}
    return {"metrics": metrics, "device": config["device"]}


def report_inputs(wildcards=None):
    """Named inputs of the report; later stages add theirs here."""
    return {
        "summary": f"results/metrics/{MODEL}/summary.csv",
        "timing": f"results/metrics/{MODEL}/timing.csv",
        "per_image": expand("results/metrics/{model}/per_image/{variant}.csv", model=MODEL, variant=VARIANTS),
        "shards": [d for v in VARIANTS for d in variant_shards(v)],
        "prompts": prompts_csv(),
        "sweep": sweep_outputs(),
        "distribution": f"results/metrics/{MODEL}/distribution.csv",
        "differences": f"results/metrics/{MODEL}/differences.csv",
        "diffc": DIFFC_OUTPUTS,
        "quant_sizes": quant_workflow.sizes_inputs(config, MODEL),
        "accel_benchmark": committed_gpu_results(),  # committed GPU runs
    }


onstart:
    # Checked once before the first job (not on dry runs): a missing model ends the run here.
    from sdsqueeze.models import ModelUnavailableError, check_model_available

    try:
        check_model_available(config["model"]["source"])
    except ModelUnavailableError as err:
        print(f"\nERROR: {err}\n", file=sys.stderr)
        raise SystemExit(1)
