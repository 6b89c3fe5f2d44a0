# Stage: models. `tiny` and `sd15-seeded` are built from a seed; any other source is resolved (and
# fetched when the network allows) so jobs load it by the same from_pretrained path.

SEEDED_ON_GPU = ON_GPU and config["model"]["source"] == "sd15-seeded"  # drawn on the GPU: seconds, not a minute


rule materialize_model:
    input:
        refuse_unconfigured,  # only the configured model is built
    output:
        model_json("{model}"),
    params:
        source=config["model"]["source"],
        tiny_seed=config["model"]["tiny_seed"],
        tiny_image_size=config["model"]["tiny_image_size"],
        tiny_fit=[config["model"]["tiny_vae_fit_steps"], config["model"]["tiny_unet_fit_steps"]],
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
