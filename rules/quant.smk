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
