# Stage: models. `tiny` is built from a seed; any other source is resolved (and fetched when the
# network allows) so jobs load it by the same from_pretrained path.


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
    log:
        "logs/models/{model}.log",
    benchmark:
        "results/benchmarks/models/{model}.tsv"
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/materialize_model.py"
