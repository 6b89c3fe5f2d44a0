# Stage: the UNet on ONNX Runtime (variants with runtime: onnxruntime). The fp32 export is cached per
# (model, image size) and rebuilt only when the model or config.onnx's export settings change; int8
# copies are made from it with onnxruntime's quantization tools (static ones read a calibration set).
wildcard_constraints:
    onnx=r"unet-\d+x\d+-(fp32|int8-dynamic|int8-static-.+)",


rule onnx_unet:
    input:
        unpack(lambda wc: {"model": model_json(wc.model), **onnx_plan.export_inputs(wc.onnx, wc.model)}),
    output:
        directory("resources/onnx/{model}/{onnx}"),
    params:
        settings=config["onnx"],
    threads: config["threads"]
    log:
        "logs/onnx/{model}/{onnx}.log",
    benchmark:
        "results/benchmarks/onnx/{model}/{onnx}.tsv"
    resources:  # export and quantization run on the CPU whatever the config's device; SD 1.5-sized UNets need many GB
        mem_mb=24000 if ON_GPU else 8000,
        runtime=120,
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/onnx_unet.py"
