# Stage: sizes of the quantized UNets (bits-accounted; the simulated quantization keeps floats).

PTQ_VARIANTS = [v for v in VARIANTS if (config["variants"][v] or {}).get("ptq")]


def quant_sizes_input():
    """Report input: the sizes table, only when some variant quantizes."""
    return [f"results/quant/{MODEL}/sizes.csv"] if PTQ_VARIANTS else []


rule quant_sizes:
    input:
        model=model_json("{model}"),
    output:
        "results/quant/{model}/sizes.csv",
    params:
        specs=[resolve_variant(config, v) for v in [REFERENCE] + PTQ_VARIANTS],
        reference=REFERENCE,
    log:
        "logs/quant/{model}/sizes.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quant_sizes.py"
