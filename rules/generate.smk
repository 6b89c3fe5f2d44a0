# Stage: generation. ONE rule for every variant; a job renders one prompt shard.


rule generate:
    input:
        model=configured_model_json,  # refuses a model, variant or shard the config lacks
        prompts=prompts_csv(PROMPTSET),
        calibration=lambda wc: quant_workflow.calibration_inputs(config, wc.variant, wc.model),
        onnx=lambda wc: onnx_plan.generate_inputs(config, resolve_variant(config, wc.variant), wc.model),
    output:
        directory("results/images/{model}/{variant}/shard-{shard}"),
    params:
        spec=lambda wc: onnx_plan.with_onnx_model(
            config, quant_workflow.with_calibration(config, resolve_variant(config, wc.variant), wc.model), wc.model
        ),
        shard_size=config["prompts"]["shard_size"],
        samples_per_prompt=config["prompts"]["samples_per_prompt"],
        device=config["device"],
        torch_threads=config["threads"],  # results depend on it: a change reruns generation
    threads: config["threads"]
    log:
        "logs/generate/{model}/{variant}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/generate/{model}/{variant}/shard-{shard}.tsv"
    resources:
        **gpu_job(runtime=(240, 30)),
    conda:
        torch_env()
    script:
        "../scripts/generate.py"
