# Stage: calibration sets for post-training quantization (ptq variants). Each set is built once
# per (model, kind, size) and shared by every variant that names its kind.
from sdsqueeze.quant.calibration import kind_of, set_name as calibration_set_name  # noqa: E402

CALIBRATION_KINDS = ("raw_data", "noise_data", "timestep_aware")


wildcard_constraints:
    calib=r"(raw_data|noise_data|timestep_aware)-n\d+(-st\d+)?",


def ptq_calibration(variant):
    """The calibration kind a variant's ptq uses, or None (no ptq, or ptq without calibration)."""
    kind = ((config["variants"][variant] or {}).get("ptq") or {}).get("calibration", "none")
    return None if kind == "none" else kind


def calibration_file(kind, model=MODEL):
    return f"results/calibration/{model}/{calibration_set_name(kind, config['calibration'])}.safetensors"


def calibration_input(wildcards):
    """Input of rule generate: the variant's calibration set, only when it uses one."""
    kind = ptq_calibration(wildcards.variant)
    return [calibration_file(kind, wildcards.model)] if kind else []


def with_calibration(spec, model=MODEL):
    """The variant spec with its calibration file, as the ptq technique reads it."""
    kind = ptq_calibration(spec["name"])
    if not kind:
        return spec
    return {**spec, "ptq": {**spec["ptq"], "calibration_file": calibration_file(kind, model)}}


rule calibration_set:
    input:
        model=model_json("{model}"),
        prompts=prompts_csv(PROMPTSET),
        captions=config["prompts"]["captions"],
    output:
        tensors="results/calibration/{model}/{calib}.safetensors",
        provenance="results/calibration/{model}/{calib}.json",
    params:
        kind=lambda wc: kind_of(wc.calib),
        settings=config["calibration"],
        # trajectories and timesteps follow the full-precision reference variant's sampling
        generation=lambda wc: {k: v for k, v in resolve_variant(config, REFERENCE).items() if k != "ptq"},
        prompt_filters={k: config["prompts"][k] for k in ("min_words", "generic_phrases", "prefix", "suffix")},
        seed=config["seed"],
        device=config["device"],
    threads: config["threads"]
    log:
        "logs/calibration/{model}/{calib}.log",
    benchmark:
        "results/benchmarks/calibration/{model}/{calib}.tsv"
    resources:
        mem_mb=32000 if ON_GPU else 4000,
        runtime=120 if ON_GPU else 30,
        gpu=gpu_resources(),
    conda:
        "../envs/gpu.yaml" if ON_GPU else "../envs/cpu.yaml"
    script:
        "../scripts/calibration_set.py"


rule calibration_all:
    input:
        lambda wc: sorted({calibration_file(k) for v in VARIANTS if (k := ptq_calibration(v))}),


localrules:
    calibration_all,
