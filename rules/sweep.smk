# Stage: latent-compression sweep. Jobs are shards of (prompt, seed) trajectories, each
# rendering its uncompressed run once and every (step, level) run on that shared path.


include: "sweep_grid.smk"


if SWEEP["enabled"]:

    rule sweep_generate:
        input:
            model=model_json("{model}"),
            prompts=prompts_csv(PROMPTSET),
        output:
            directory("results/sweep/{model}/{operator}/shard-{shard}"),
        params:
            spec=resolve_variant(config, SWEEP["variant"] or REFERENCE),
            sweep=SWEEP,
            device=config["device"],
        wildcard_constraints:
            operator=SWEEP_OPERATOR,
        threads: config["threads"]
        log:
            "logs/sweep/{model}/{operator}/shard-{shard}.log",
        benchmark:
            "results/benchmarks/sweep/{model}/{operator}/shard-{shard}.tsv"
        resources:
            **gpu_job(runtime=(240, 60)),
        conda:
            torch_env()
        script:
            "../scripts/sweep_generate.py"

    rule sweep_metrics:
        input:
            "results/sweep/{model}/{operator}/shard-{shard}",
        output:
            "results/sweep/{model}/{operator}/metrics/shard-{shard}.csv",
        params:
            device=config["device"],
            weights_dir=config["metrics"]["weights_dir"],
            download=config["metrics"]["download"],
        threads: config["threads"]
        log:
            "logs/sweep/{model}/{operator}/metrics-{shard}.log",
        benchmark:
            "results/benchmarks/sweep/{model}/{operator}/metrics-{shard}.tsv"
        resources:
            mem_mb=4000,
            runtime=60,
        conda:
            "../envs/metrics.yaml"
        script:
            "../scripts/sweep_metrics.py"

    rule sweep_collect:
        input:
            metrics=expand("results/sweep/{{model}}/{{operator}}/metrics/shard-{shard}.csv", shard=SWEEP_SHARDS),
            shards=expand("results/sweep/{{model}}/{{operator}}/shard-{shard}", shard=SWEEP_SHARDS),
        output:
            csv="results/sweep/{model}/{operator}/sweep.csv",
            evaluations="results/sweep/{model}/{operator}/evaluations.json",
        log:
            "logs/sweep/{model}/{operator}/collect.log",
        conda:
            "../envs/report.yaml"
        script:
            "../scripts/sweep_collect.py"

    rule sweep_fit:
        input:
            "results/sweep/{model}/{operator}/sweep.csv",
        output:
            fit="results/sweep/{model}/{operator}/fit/fit.json",
            surface="results/sweep/{model}/{operator}/fit/surface.png",
            heatmap="results/sweep/{model}/{operator}/fit/heatmap.png",
            residuals="results/sweep/{model}/{operator}/fit/residuals.png",
        params:
            fit=SWEEP["fit"],
        log:
            "logs/sweep/{model}/{operator}/fit.log",
        benchmark:
            "results/benchmarks/sweep/{model}/{operator}/fit.tsv"
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../envs/report.yaml"
        script:
            "../scripts/sweep_fit.py"
