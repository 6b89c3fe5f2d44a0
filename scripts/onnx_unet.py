"""Entry point of rule onnx_unet: the model's UNet exported to ONNX (fp32), or an int8 copy of that export."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from pathlib import Path

from sdsqueeze import io, models, smk
from sdsqueeze.accel import onnx_plan, onnxrt


def main(snakemake):
    p = snakemake.params
    name = snakemake.wildcards.onnx
    parsed = onnx_plan.parse_name(name)
    with io.atomic_dir(snakemake.output[0]) as tmp:
        target = Path(tmp) / onnxrt.MODEL_FILE
        if parsed["int8"] == "none":
            pipe = models.load_materialized(snakemake.input.model, device="cpu", dtype="float32")
            if getattr(pipe, "unet", None) is None:
                raise onnxrt.OnnxUnavailable(
                    f"runtime: onnxruntime exports a UNet; {type(pipe).__name__} has none (e.g. a transformer "
                    "denoiser); run this model with runtime: torch")
            factor = pipe.vae_scale_factor
            record = {"precision": "fp32", **onnxrt.export_unet(
                pipe.unet, target, parsed["height"] // factor, parsed["width"] // factor,
                opset=p.settings["opset"], dynamo=p.settings["dynamo"], tolerance=p.settings["tolerance"])}
        else:
            # quantize_* read the fp32 graph with its external weights (if any) from beside it
            source = Path(snakemake.input.fp32) / onnxrt.MODEL_FILE
            calibration = snakemake.input.get("calibration")
            record = {"precision": f"int8-{parsed['int8']}", "source": str(source),
                      **onnxrt.quantize(source, target, parsed["int8"], calibration)}
            for leftover in Path(tmp).glob("*-inferred.onnx"):  # onnxruntime's shape-inference copy
                leftover.unlink()
        record["file_bytes"] = onnxrt.file_bytes(tmp)
        io.write_json(Path(tmp) / onnxrt.RECORD_FILE, io.provenance(record, "cpu"))


smk.run(snakemake, main)  # noqa: F821
