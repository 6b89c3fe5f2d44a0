# Stage: models. `tiny` is the embedded model: its committed trained weights (data/models/tiny/),
# seeded random weights, or weights retrained here (model.tiny_weights: fit). `sd15-seeded` is SD
# 1.5's architecture built from a seed. Any other source is resolved (and fetched when the network
# allows) so jobs load it by the same from_pretrained path.

SEEDED_ON_GPU = ON_GPU and config["model"]["source"] == "sd15-seeded"  # drawn on the GPU: seconds, not a minute


rule materialize_model:
    input:
        unpack(tiny_weights_input),
        refuse_unconfigured,  # only the configured model is built
    output:
        model_json("{model}"),
    params:
        source=config["model"]["source"],
        tiny_seed=config["model"]["tiny_seed"],
        tiny_image_size=config["model"]["tiny_image_size"],
        tiny_weights=config["model"]["tiny_weights"],
        tiny_fit=[config["model"]["tiny_vae_fit_steps"], config["model"]["tiny_unet_fit_steps"]],  # tiny-uncond
        device=config["device"] if SEEDED_ON_GPU else "cpu",
    log:
        "logs/models/{model}.log",
    benchmark:
        "results/benchmarks/models/{model}.tsv"
    resources:
        mem_mb=16000 if SEEDED_ON_GPU else 8000,
        runtime=60,
        gpu=1 if SEEDED_ON_GPU else 0,
    conda:
        torch_env() if SEEDED_ON_GPU else "../envs/cpu.yaml"
    script:
        "../scripts/materialize_model.py"


rule fit_tiny_model:
    """Retrain the embedded model (sdsqueeze.tinytrain) with model.tiny_fit's settings, on the
    config's device: a GPU at full size, a CPU at reduced size."""
    input:
        refuse_unconfigured,
    output:
        directory("resources/models/{model}/trained"),
    params:
        fit=config["model"]["tiny_fit"],
        tiny_seed=config["model"]["tiny_seed"],
        tiny_image_size=config["model"]["tiny_image_size"],
        device=config["device"],
    log:
        "logs/models/{model}-fit.log",
    benchmark:
        "results/benchmarks/models/{model}-fit.tsv"
    resources:
        **gpu_job(mem_mb=(32000, 8000), runtime=(60, 600)),
    conda:
        torch_env()
    script:
        "../scripts/fit_tiny_model.py"
