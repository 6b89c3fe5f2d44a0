"""ONNX Runtime as the runtime of a variant's UNet (variant key ``runtime: onnxruntime``).

The UNet is exported once per (model, latent size) with ``torch.onnx.export`` (the dynamo exporter,
the TorchScript one where dynamo fails), checked with the onnx checker and against PyTorch's output
on the same inputs, and cached under ``resources/onnx/{model}/``; int8 copies are made from it with
onnxruntime's own quantization tools (``quantize_dynamic``; ``quantize_static`` in QDQ format with a
CalibrationDataReader over one of the pipeline's calibration sets).

Why a wrapper module inside the regular pipeline rather than diffusers' OnnxStableDiffusionPipeline:
that class needs every component in ONNX (text encoder, VAE encoder and decoder), runs numpy
schedulers of its own and has no ``callback_on_step_end``, so its images would differ from the
PyTorch reference for reasons other than the UNet, and it could not share the generation job's
seeding, latents capture and timing. Here only the UNet changes, so any difference in the images
is the runtime's (and the int8 rounding's).

Names, paths and the config check live in sdsqueeze.accel.onnx_plan (no onnx, no torch).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..technique import TechniqueConfig
from .onnx_plan import INPUTS, INT8_MODES, MODEL_FILE, RECORD_FILE

# Execution providers tried in this order; the first one this onnxruntime build has is used, and
# recorded beside the images (CPU here; CUDA/TensorRT where a GPU build of onnxruntime is installed).
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# Above this many weight bytes the protobuf's 2 GB limit forces weights into an external file.
SINGLE_FILE_BYTES = 1_500_000_000
# What onnxruntime quantizes to int8: the convolutions and matrix products, i.e. the PyTorch PTQ's
# Conv2d and Linear layers (norms, softmax and elementwise ops stay fp32 in both).
INT8_OPS = ("Conv", "MatMul", "Gemm")


class OnnxUnavailable(RuntimeError):
    """onnx/onnxruntime is not installed, or this model's UNet cannot be exported."""


@dataclass(frozen=True)
class OnnxRuntimeConfig(TechniqueConfig):
    runtime: str = "torch"
    onnx_int8: str = "none"          # none = the fp32 export; dynamic / static = onnxruntime's int8 PTQ
    onnx_calibration: str = "timestep_aware"  # static: the calibration set its ranges come from

    @property
    def enabled(self) -> bool:
        return self.runtime == "onnxruntime"


# --- export ----------------------------------------------------------------------------------------

def _export_module(unet):
    """The UNet with plain tensor inputs and output, as the exporters want it."""
    import torch

    class UNetForExport(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    return UNetForExport(unet).eval()


def example_inputs(unet, height: int, width: int, batch: int = 2, seed: int = 0):
    """Seeded UNet inputs at a latent size (a guided batch of one prompt by default)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn((batch, unet.config.in_channels, height, width), generator=generator)
    timestep = torch.full((batch,), 500.0)
    text = torch.randn((batch, 77, unet.config.cross_attention_dim), generator=generator)
    return sample, timestep, text


def export_unet(unet, path: str | Path, latent_height: int, latent_width: int, opset: int = 18,
                dynamo: bool = True, tolerance: float = 1e-3) -> dict:
    """Export ``unet`` (batch dimension dynamic) to ``path``, check the graph and compare its
    output with PyTorch's on fresh inputs of another batch size. Returns what was done."""
    import numpy as np
    import onnx
    import torch

    path = Path(path)
    module = _export_module(unet)
    args = example_inputs(unet, latent_height, latent_width)
    weight_bytes = sum(p.numel() * p.element_size() for p in unet.parameters())
    external = weight_bytes > SINGLE_FILE_BYTES
    began = time.perf_counter()
    exporter, errors = None, []
    for use_dynamo in ([True, False] if dynamo else [False]):
        try:
            _run_exporter(module, args, path, opset, use_dynamo, external)
            exporter = "dynamo" if use_dynamo else "torchscript"
            break
        except Exception as err:  # noqa: BLE001 - every exporter failure is reported together below
            errors.append(f"{'dynamo' if use_dynamo else 'torchscript'}: {type(err).__name__}: "
                          f"{str(err).splitlines()[0][:300] if str(err) else ''}")
    if exporter is None:
        raise OnnxUnavailable(f"the UNet ({type(unet).__name__}) could not be exported to ONNX ("
                              + "; ".join(errors) + "); run this model with runtime: torch")
    seconds = time.perf_counter() - began
    onnx.checker.check_model(str(path))  # by path: works for models with external weights too
    check_inputs = example_inputs(unet, latent_height, latent_width, batch=3, seed=1)
    with torch.inference_mode():
        expected = module(*check_inputs).numpy()
    got = run_session(session(path, threads=torch.get_num_threads(), device="cpu")[0], *check_inputs)
    max_abs = float(np.abs(got - expected).max())
    scale = float(np.abs(expected).max())
    if not max_abs <= tolerance * max(scale, 1.0):
        raise OnnxUnavailable(f"the exported UNet differs from PyTorch by {max_abs:.3g} (max |output| "
                              f"{scale:.3g}, tolerance {tolerance} relative); not used")
    return {"exporter": exporter, "exporter_errors": errors, "opset": opset, "seconds": round(seconds, 1),
            "external_data": external, "check": {"max_abs_diff": max_abs, "max_abs_output": scale,
                                                 "tolerance_relative": tolerance, "batch": 3}}


def _run_exporter(module, args, path: Path, opset: int, dynamo: bool, external: bool) -> None:
    import torch

    names = {"input_names": list(INPUTS), "output_names": ["noise_pred"]}
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=1024)
        shapes = {name: {0: batch} for name in INPUTS}
        torch.onnx.export(module, args, str(path), dynamo=True, opset_version=opset, dynamic_shapes=shapes,
                          external_data=external, optimize=True, **names)
    else:
        axes = {name: {0: "batch"} for name in [*INPUTS, "noise_pred"]}
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=min(opset, 17),
                          dynamic_axes=axes, **names)


def file_bytes(folder: str | Path) -> int:
    """Bytes of an exported model: the graph and any external weight files beside it."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.name != RECORD_FILE)


# --- int8 with onnxruntime's quantization tools ----------------------------------------------------

class CalibrationReader:
    """onnxruntime's CalibrationDataReader over a calibration set, in the guided [uncond; cond]
    layout the pipeline feeds the UNet (the same batches the PyTorch PTQ calibrates on)."""

    def __init__(self, tensors: dict, batch: int = 8):
        from ..quant.ptq import calibration_batches

        self.batches = [tuple(t.float().numpy() for t in b) for b in calibration_batches(tensors, batch)]
        self.position = 0

    def get_next(self):
        if self.position >= len(self.batches):
            return None
        sample, timestep, text = self.batches[self.position]
        self.position += 1
        return {"sample": sample, "timestep": timestep, "encoder_hidden_states": text}

    def rewind(self):
        self.position = 0


def quantize(fp32_path: str | Path, out_path: str | Path, mode: str, calibration_file: str | None = None) -> dict:
    """int8 copy of an exported UNet: ``dynamic`` (weights int8 ahead, activations per call) or
    ``static`` (QDQ, activation ranges from the calibration set, weights per channel)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if mode not in ("dynamic", "static"):
        raise ValueError(f"onnx_int8 is '{mode}'; allowed: {', '.join(INT8_MODES)}")
    external = any(p.suffix != ".onnx" for p in Path(fp32_path).parent.iterdir()
                   if p.name not in (RECORD_FILE, Path(fp32_path).name))
    began = time.perf_counter()
    if mode == "dynamic":
        quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(INT8_OPS), use_external_data_format=external)
        details = {"weights": "int8 per tensor", "activations": "uint8, ranges computed per call"}
    else:
        from ..quant import calibration

        tensors = calibration.load(calibration_file)
        reader = CalibrationReader(tensors)

        class Reader(CalibrationDataReader):  # onnxruntime checks the base class
            get_next, rewind = reader.get_next, reader.rewind

        quantize_static(str(fp32_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=list(INT8_OPS), use_external_data_format=external)
        details = {"weights": "int8 per output channel", "activations": "uint8, min-max ranges fixed ahead",
                   "calibration_file": calibration_file, "calibration_batches": len(reader.batches),
                   "calibration_samples": int(tensors["sample"].shape[0])}
    return {"mode": mode, "ops": list(INT8_OPS), "seconds": round(time.perf_counter() - began, 1), **details}


# --- running -------------------------------------------------------------------------------------

def pick_providers(device: str) -> list[str]:
    """onnxruntime providers for the job's device: GPU ones first when the job runs on CUDA and this
    build of onnxruntime has them, CPU always last."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    gpu = [p for p in GPU_PROVIDERS if p in available] if device.startswith("cuda") else []
    return [*gpu, "CPUExecutionProvider"]


def session(path: str | Path, threads: int, device: str = "cpu", spinning: bool = True):
    """(InferenceSession, providers it uses): one intra-op thread per torch thread of the job, so
    the two runtimes are timed on the same share of the CPU; ``spinning=False`` makes idle pool
    threads sleep (on a shared CPU a spinning thread takes its partner's time slice)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    created = onnxruntime.InferenceSession(str(path), options, providers=pick_providers(device))
    return created, created.get_providers()


def run_session(ort_session, sample, timestep, text):
    """One UNet call on onnxruntime; torch tensors in, numpy out. The timestep is broadcast to
    the batch, as diffusers' UNet does with a scalar one."""
    import torch

    timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
    feeds = {"sample": sample.detach().float().cpu().numpy(),
             "timestep": timestep.contiguous().cpu().numpy(),
             "encoder_hidden_states": text.detach().float().cpu().numpy()}
    return ort_session.run(None, feeds)[0]


def ort_unet(ort_session, torch_unet):
    """A module the pipeline calls like its UNet, running ``ort_session``; it keeps the UNet's
    config (the pipeline reads in_channels, sample_size, time_cond_proj_dim from it)."""
    import torch
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

    class OrtUNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = torch_unet.config
            self.session = ort_session
            # A buffer so the pipeline's device and dtype lookups find the fp32 CPU tensors it feeds.
            self.register_buffer("anchor", torch.zeros(()), persistent=False)

        @property
        def dtype(self):
            return torch.float32

        @property
        def device(self):  # read by the pipeline's _execution_device, like a diffusers model's
            return self.anchor.device

        def forward(self, sample, timestep, encoder_hidden_states, return_dict=True, **unused):
            out = torch.from_numpy(run_session(self.session, sample, timestep, encoder_hidden_states))
            out = out.to(sample.device, sample.dtype)
            return UNet2DConditionOutput(sample=out) if return_dict else (out,)

    return OrtUNet()


def apply(prepared, config: OnnxRuntimeConfig) -> None:
    """Variant technique (key ``runtime: onnxruntime``): the pipeline's UNet runs on onnxruntime,
    from the export rule onnx_unet cached for this variant (``onnx_model`` in the spec)."""
    import torch

    folder = prepared.spec.get("onnx_model")
    if not folder:
        raise OnnxUnavailable("runtime: onnxruntime needs the exported UNet (rule onnx_unet passes "
                              "onnx_model); none was given")
    device = str(prepared.pipe.device)
    ort_session, providers = session(Path(folder) / MODEL_FILE, torch.get_num_threads(), device)
    prepared.pipe.unet = ort_unet(ort_session, prepared.pipe.unet)
    record = json.loads((Path(folder) / RECORD_FILE).read_text())
    prepared.notes["onnxruntime"] = {"model": folder, "providers": providers, "int8": config.onnx_int8,
                                     "file_bytes": record["params"].get("file_bytes")}
