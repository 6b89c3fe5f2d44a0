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
    resources:
        **gpu_job(mem_mb=(64000, 8000), runtime=(120, 30)),
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/onnx_unet.py"
