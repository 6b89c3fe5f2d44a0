# Stage: sizes of the quantized UNets (bits-accounted; the simulated quantization keeps floats).


rule quant_sizes:
    input:
        model=model_json("{model}"),
    output:
        "results/quant/{model}/sizes.csv",
    params:
        specs=[resolve_variant(config, v) for v in [REFERENCE] + quant_workflow.ptq_variants(config)],
        reference=REFERENCE,
    log:
        "logs/quant/{model}/sizes.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quant_sizes.py"


# Stage: the calibrated (and reconstructed) quantizers of each variant that reads a calibration set,
# computed once; every generate shard of the variant loads them (bit-identical to computing inline).
rule ptq_state:
    input:
        model=model_json("{model}"),
        calibration=lambda wc: quant_workflow.calibration_set_inputs(config, wc.variant, wc.model),
    output:
        "results/quant/{model}/state/{variant}.safetensors",
    params:
        spec=lambda wc: quant_workflow.with_calibration_set(config, resolve_variant(config, wc.variant), wc.model),
        device=config["device"],
    threads: config["threads"]
    log:
        "logs/quant/{model}/state/{variant}.log",
    benchmark:
        "results/benchmarks/quant/{model}/state/{variant}.tsv"
    resources:
        **gpu_job(mem_mb=(64000, 4000), runtime=(1440, 30)),
    conda:
        torch_env()
    script:
        "../scripts/ptq_state.py"
