# Stage: DiffC compression. Images (scikit-image's photographs by default) are coded at every rate
# point by reverse-channel coding the model's denoising steps; one .diffc file per image x rate
# point; a job is a shard of images (all rate points share one walk down the noise schedule).
from sdsqueeze.diffc.images import check_image_names as diffc_check_image_names
from sdsqueeze.diffc.runs import shard_images as diffc_shard_images
from sdsqueeze.prompts import n_shards as diffc_n_shards

DIFFC = config["diffc"]
_off_grid = [t for t in DIFFC["recon_timesteps"] if t % DIFFC["step_stride"]]
if DIFFC["enabled"] and _off_grid:
    raise WorkflowError(
        f"invalid config: diffc.recon_timesteps {_off_grid} are not multiples of diffc.step_stride "
        f"({DIFFC['step_stride']}); coding stops only on the grid of coded timesteps"
    )
if DIFFC["enabled"]:
    try:
        diffc_check_image_names(DIFFC["images"])  # paths relative to the working directory, as the jobs read them
    except ValueError as err:
        raise WorkflowError(str(err)) from None
DIFFC_SHARDS = list(range(diffc_n_shards(len(DIFFC["images"]), DIFFC["shard_size"])))
# The rate-distortion table when the stage is enabled, else nothing (rule diffc_all, the report).
DIFFC_OUTPUTS = [f"results/diffc/{MODEL}/rd.csv"] if DIFFC["enabled"] else []


rule diffc_encode:
    input:
        model=model_json("{model}"),
    output:
        directory("results/diffc/{model}/encoded/shard-{shard}"),
    params:
        images=lambda wc: diffc_shard_images(DIFFC["images"], wc.shard, DIFFC["shard_size"]),
        diffc=DIFFC,
        seed=config["seed"],
        device=config["device"],
    threads: DIFFC["threads"]
    log:
        "logs/diffc/{model}/encode-shard-{shard}.log",
    benchmark:
        "results/benchmarks/diffc/{model}/encode-shard-{shard}.tsv"
    resources:
        mem_mb=32000 if ON_GPU else 4000,
        runtime=240 if ON_GPU else 30,
        gpu=gpu_resources(),
    conda:
        "../envs/gpu.yaml" if ON_GPU else "../envs/cpu.yaml"
    script:
        "../scripts/diffc_encode.py"


rule diffc_decode:
    input:
        model=model_json("{model}"),
        encoded="results/diffc/{model}/encoded/shard-{shard}",
    output:
        directory("results/diffc/{model}/decoded/shard-{shard}"),
    params:
        diffc=DIFFC,
        device=config["device"],
    threads: DIFFC["threads"]
    log:
        "logs/diffc/{model}/decode-shard-{shard}.log",
    benchmark:
        "results/benchmarks/diffc/{model}/decode-shard-{shard}.tsv"
    resources:
        mem_mb=32000 if ON_GPU else 4000,
        runtime=240 if ON_GPU else 30,
        gpu=gpu_resources(),
    conda:
        "../envs/gpu.yaml" if ON_GPU else "../envs/cpu.yaml"
    script:
        "../scripts/diffc_decode.py"


rule diffc_rd:
    input:
        encoded=expand("results/diffc/{{model}}/encoded/shard-{shard}", shard=DIFFC_SHARDS),
        decoded=expand("results/diffc/{{model}}/decoded/shard-{shard}", shard=DIFFC_SHARDS),
    output:
        csv="results/diffc/{model}/rd.csv",
    threads: 1
    log:
        "logs/diffc/{model}/rd.log",
    benchmark:
        "results/benchmarks/diffc/{model}/rd.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/metrics.yaml"
    script:
        "../scripts/diffc_rd.py"
