# Stage: calibration sets for post-training quantization (ptq variants). Each set is built once
# per (model, kind, size) and shared by every variant that names its kind; rule generate depends
# on one only for the variants that use it (sdsqueeze.quant.workflow holds the path helpers).
from sdsqueeze.quant.calibration import kind_of as calibration_kind  # noqa: E402


wildcard_constraints:
    calib=r"(raw_data|noise_data|timestep_aware)-n\d+(-st\d+)?",


rule calibration_set:
    input:
        model=model_json("{model}"),
        prompts=prompts_csv(PROMPTSET),
        captions=[] if UNCONDITIONAL else config["prompts"]["captions"],  # calibration prompts; none without text
    output:
        tensors="results/calibration/{model}/{calib}.safetensors",
        provenance="results/calibration/{model}/{calib}.json",
    params:
        kind=lambda wc: calibration_kind(wc.calib),
        settings=config["calibration"],
        # trajectories and timesteps follow the full-precision reference variant's sampling
        generation=lambda wc: {k: v for k, v in resolve_variant(config, REFERENCE).items() if k != "ptq"},
        prompt_filters={} if UNCONDITIONAL else {k: config["prompts"][k] for k in ("min_words", "generic_phrases", "prefix", "suffix")},
        seed=config["seed"],
        device=config["device"],
    threads: config["threads"]
    log:
        "logs/calibration/{model}/{calib}.log",
    benchmark:
        "results/benchmarks/calibration/{model}/{calib}.tsv"
    resources:
        **gpu_job(runtime=(120, 30)),
    conda:
        torch_env()
    script:
        "../scripts/calibration_set.py"
