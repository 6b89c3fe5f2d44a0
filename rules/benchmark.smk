# Stage: acceleration benchmark. Not part of `all`: run `snakemake --cores all benchmark_all`.
# On the embedded CPU default it times the tiny model at tiny sizes; config/accel.yaml runs the
# SD 1.5 architecture (seeded weights) at 512 px, 50 steps, batch 1 and 4 on a GPU.


rule accel_benchmark:
    output:
        directory("results/benchmarks/accel"),
    params:
        bench=config["accel_benchmark"],
        device=config["device"],
        seed=config["seed"],
    threads: config["threads"]
    log:
        "logs/benchmarks/accel.log",
    benchmark:
        "results/benchmarks/rules/accel_benchmark.tsv"
    resources:
        **gpu_job(mem_mb=(64000, 4000), runtime=(120, 20)),
    conda:
        torch_env()
    script:
        "../scripts/accel_benchmark.py"
