# Shared set-up: config validation (before any job runs), path helpers, wildcard constraints.
import os
import sys

import yaml

# The Snakefile imports the workflow's own package (scripts do the same via scripts/_srcpath.py).
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from sdsqueeze import config as sq_config  # noqa: E402
from sdsqueeze.prompts import CaptionsError, check_prompt_set, n_shards  # noqa: E402
from sdsqueeze.accel import onnx_plan  # noqa: E402
from sdsqueeze.quant import workflow as quant_workflow  # noqa: E402
from sdsqueeze.variants import resolve_variant  # noqa: E402

try:
    sq_config.validate(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml"))
    # The captions file and prompts.n, so `snakemake -n` refuses a bad file or an impossible n in
    # seconds (here, not in sdsqueeze.config, which jobs import without pycocotools).
    if sq_config.model_kind(config) != sq_config.UNCONDITIONAL:
        check_prompt_set(config["prompts"])
except (sq_config.ConfigError, CaptionsError) as err:
    message = str(err)
    raise WorkflowError(message if message.startswith("invalid config") else f"invalid config: {message}") from None

MODEL = config["model"]["name"]
# An unconditional model (LDM, DDPM, DDIM): a seeded sample list instead of prompts (rules/prompts.smk).
MODEL_KIND = sq_config.model_kind(config)
UNCONDITIONAL = MODEL_KIND == sq_config.UNCONDITIONAL
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
    # Any name here; an input function (configured_model_json) refuses one the config lacks,
    # listing what it has (a constraint listing the variants gives only "no rule to produce").
    variant=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
    shard=r"\d+",


def model_json(model=MODEL):
    return f"resources/models/{model}/model.json"


def refuse_unconfigured(wildcards):
    """Check a target's model, variant and shard against the config (as an input function: no
    inputs of its own). A typo in a target stops the dry run with one message saying what is
    configured, instead of planning a new model build or an empty shard."""
    problems = []
    if wildcards.model != MODEL:
        problems.append(f"model {wildcards.model!r} is not configured (model.name: {MODEL})")
    if "variant" in wildcards.keys() and wildcards.variant not in VARIANTS:
        problems.append(f"variant {wildcards.variant!r} is not configured (variants: {', '.join(VARIANTS)})")
    if "shard" in wildcards.keys() and int(wildcards.shard) not in SHARDS:
        problems.append(
            f"shard {wildcards.shard} is beyond the prompt set (prompts.n {config['prompts']['n']} "
            f"in shards of {config['prompts']['shard_size']}: shard 0 to {SHARDS[-1]})"
        )
    if problems:
        raise WorkflowError("target not in this config: " + "; ".join(problems))
    return []


def configured_model_json(wildcards):
    """model.json of the target's model, once refuse_unconfigured has passed the target; for a
    variant that names a student (`student: pd-4`), the student's record (rules/distill.smk)."""
    refuse_unconfigured(wildcards)
    variant = wildcards.variant if "variant" in wildcards.keys() else None
    student = (config["variants"].get(variant) or {}).get("student")
    return student_json(student) if student else model_json(wildcards.model)


def student_json(student):
    """The record of a trained student (its pipeline folder beside it), read like a model.json."""
    return f"resources/models/{student}/student.json"


# The distill stage's helpers (DISTILL, STUDENTS: rules/distill.smk).
def distill_summary(student):
    return f"results/distill/{MODEL}/{student}/summary.json"


def teacher_model_json(wildcards):
    teacher = teacher_of(config, wildcards.student)
    return model_json() if teacher == MODEL else student_json(teacher)


def teacher_sampling():
    """The teacher samples as the reference variant draws its images, unless the section overrides."""
    spec = resolve_variant(config, REFERENCE)
    for key, value in (("steps", DISTILL["teacher_steps"]), ("guidance", DISTILL["teacher_guidance"])):
        if value is not None:
            spec[key] = value
    return spec


TINY_WEIGHT_FILES = ["unet.safetensors", "vae.safetensors", "text_encoder.safetensors", "training.json"]


def tiny_weights_input(wildcards):
    """The weights folder materialize_model loads: committed, or the fit rule's output."""
    model = config["model"]
    if model["source"] != "tiny" or model["tiny_weights"] == "seeded":
        return {}
    if model["tiny_weights"] == "fit":
        return {"weights": f"resources/models/{wildcards.model}/trained"}
    committed = os.path.join(workflow.basedir, "data", "models", "tiny")
    return {"weights": committed, "weight_files": [os.path.join(committed, f) for f in TINY_WEIGHT_FILES]}


def prompts_csv(promptset=PROMPTSET):
    return f"results/prompts/{promptset}.csv"


def shard_dir(variant, shard, model=MODEL):
    return f"results/images/{model}/{variant}/shard-{shard}"


def variant_shards(variant, model=MODEL):
    return [shard_dir(variant, s, model) for s in SHARDS]


def gpu_resources():
    """What a generation-class job asks of the scheduler: one GPU when the config runs on CUDA."""
    return 1 if ON_GPU else 0


def gpu_job(mem_mb=(32000, 4000), runtime=(240, 30)):
    """Resources of a job that runs the model: (GPU, CPU) memory in MB and minutes, picked by the
    config's device, and one GPU when it runs on CUDA."""
    pick = 0 if ON_GPU else 1
    return {"mem_mb": mem_mb[pick], "runtime": runtime[pick], "gpu": gpu_resources()}


def torch_env():
    """The conda env of a job that runs the model: CUDA torch on a GPU config, CPU torch otherwise."""
    return "../envs/gpu.yaml" if ON_GPU else "../envs/cpu.yaml"


def metrics_settings(per_image=False):
    """The config slice the metrics networks depend on (not the statistics' settings; for the
    per-image jobs, not the choice of distribution metrics either)."""
    statistics = ("confidence", "bootstrap_resamples", "equivalence") + (("distribution",) if per_image else ())
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
        "distill": DISTILL_OUTPUTS,
        "distill_models": [model_json(), *map(student_json, STUDENTS)] if STUDENTS else [],
        "quant_sizes": quant_workflow.sizes_inputs(config, MODEL),
        "onnx_exports": onnx_plan.all_exports(config, MODEL),
        "accel_benchmark": committed_benchmarks(),  # committed GPU runs, current per GPU type
        "gpu_results": committed_benchmarks(),
        "claims": workflow_file("data/claims.yaml"),
    }


def workflow_file(path):
    """A file shipped with the workflow, as a job sees it: relative to the working directory when
    it lies below it (the usual run in the checkout), else absolute (`-d elsewhere`)."""
    path = os.path.abspath(os.path.join(workflow.basedir, path))
    inside = os.path.commonpath([path, os.getcwd()]) == os.getcwd()
    return os.path.relpath(path) if inside else path


def committed_benchmarks():
    """The committed GPU runs that stand for each GPU type now (benchmarks/results/current.yaml);
    none in a copy of the workflow without them (the report then shows no GPU table)."""
    from sdsqueeze.accel.measure import committed_results

    return [workflow_file(path) for path in committed_results(workflow.basedir)]


onstart:
    # Checked once before the first job (not on dry runs): a missing model ends the run here.
    from sdsqueeze.models import ModelUnavailableError, check_model_available

    try:
        check_model_available(config["model"]["source"], MODEL_KIND)
    except ModelUnavailableError as err:
        print(f"\nERROR: {err}\n", file=sys.stderr)
        raise SystemExit(1)
    from sdsqueeze.io import unwritable_folders

    blocked = unwritable_folders(["results", "resources", "logs"])
    if blocked:
        print(f"\nERROR: cannot write to {', '.join(blocked)} (read-only file system or no permission); "
              "make it writable or run from a writable copy of the workflow\n", file=sys.stderr)
        raise SystemExit(1)


def add_code_params(workflow_rules):
    """Give each rule that runs a script a `code` param, the hash of its script and of the
    sdsqueeze modules it imports (sdsqueeze.codehash). Snakemake reruns a job whose params
    changed, so an edit to a module reruns the rules that import it and, through their outputs,
    what depends on them. Called once after all rules are defined (Snakefile), so a new rule is
    covered without a line of its own."""
    from pathlib import Path

    from sdsqueeze.codehash import code_hash

    package = Path(workflow.basedir) / "src" / "sdsqueeze"
    for each in workflow_rules:
        if each.script:
            script = os.path.join(each.basedir.get_path_or_uri(secret_free=True), each.script)
            each.set_params(code=code_hash(Path(os.path.normpath(script)), package.resolve()))
