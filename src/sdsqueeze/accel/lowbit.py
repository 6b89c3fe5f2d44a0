"""Real low-bit kernels: torchao's ``quantize_`` (weights and, for the dynamic schemes,
activations of the UNet's linear layers), and fp8 or int8 with static scales (``fp8static``).

Each torchao scheme stops with a clear message where it cannot run; none falls back to float. With
torchao, convolutions (55% of an SD 1.5 UNet step's FLOPs) stay in the model's dtype: torchao
0.18's float8 conv2d needs the separate ``mslk`` kernels and it has no int8 conv. The static fp8
schemes calibrate once and take linears (``fp8-static-linear``), 1x1 convolutions as GEMMs too
(``fp8-static-gemm``), and the 3x3 convolutions on a Triton implicit-GEMM kernel (``fp8-static``);
off CUDA they simulate the fp8 arithmetic in fp32. The ``int8-static*`` schemes take the same three
scopes in int8 (int32 accumulation: ``torch._int_mm`` for GEMMs, the same Triton kernel for convs).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch

from ..technique import TechniqueConfig

TORCHAO_SCHEMES = ("int8-weight-only", "int8-dynamic", "int4-weight-only", "fp8-dynamic")
STATIC_SCOPES = {f"{fmt}-static{suffix}": scope for fmt in ("fp8", "int8")
                 for suffix, scope in (("-linear", "linear"), ("-gemm", "gemm"), ("", "all"))}
SCHEMES = (*TORCHAO_SCHEMES, *STATIC_SCOPES)
# torch._int_mm and the fp8 row-wise GEMM need more than 16 rows; the time-embedding linears see
# one row per image (2 with CFG), so they stay in float. Matched on the module's name.
SMALL_ROW_LINEARS = ("time_embedding", "time_emb_proj", "add_embedding", "class_embedding")
INT4_GROUP = 128


def static_format(scheme: str) -> str:
    """fp8 or int8: the number format of a static scheme."""
    return scheme.split("-", 1)[0]


class LowBitUnavailable(RuntimeError):
    """The requested low-bit scheme cannot run here."""


def check_supported(scheme: str, device: torch.device, dtype: torch.dtype) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown lowbit scheme '{scheme}'; one of {SCHEMES}")
    if scheme in STATIC_SCOPES:
        needs = (8, 9) if static_format(scheme) == "fp8" else (8, 0)  # int8 mma: Ampere and later
        if device.type == "cuda" and torch.cuda.get_device_capability(device) < needs:
            raise LowBitUnavailable(f"lowbit '{scheme}' needs {static_format(scheme)} tensor cores "
                                    f"(compute capability >= {needs[0]}.{needs[1]}).")
        return  # off CUDA the 8-bit arithmetic runs on the CPU (fp8 simulated in fp32)
    if device.type != "cuda":
        raise LowBitUnavailable(
            f"lowbit '{scheme}' needs a CUDA GPU (torchao's int8/int4/fp8 kernels); this job runs "
            f"on '{device}'. Use device: cuda, or drop the lowbit key from this variant.")
    major, minor = torch.cuda.get_device_capability(device)
    if scheme == "fp8-dynamic" and (major, minor) < (8, 9):
        raise LowBitUnavailable(
            f"lowbit 'fp8-dynamic' needs compute capability >= 8.9 (Ada/Hopper); this GPU is {major}.{minor}.")
    if scheme == "int4-weight-only" and dtype != torch.bfloat16:
        raise LowBitUnavailable(
            "lowbit 'int4-weight-only' uses torchao's tinygemm kernel, which takes bfloat16 "
            f"activations; set dtype: bfloat16 for this variant (it is {dtype}).")
    if scheme == "fp8-dynamic" and dtype != torch.bfloat16:
        raise LowBitUnavailable(
            "lowbit 'fp8-dynamic' uses per-row scales that torchao supports for bfloat16 weights "
            f"only; set dtype: bfloat16 for this variant (it is {dtype}).")


def config_for(scheme: str):
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        PerRow,
    )

    # set_inductor_config=False: torchao's recommended inductor settings turn on coordinate-descent
    # autotuning, which made compiling the SD 1.5 UNet run past a GPU machine's time limit;
    # the one setting that matters for int8 (fusing the scale into _int_mm) is set by hand below.
    if scheme == "int8-weight-only":
        return Int8WeightOnlyConfig(set_inductor_config=False)
    if scheme == "int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    if scheme == "int4-weight-only":
        # tile_packed_to_4d = tinygemm's layout (aten._weight_int4pack_mm, in torch itself); the
        # default "plain" format needs the separate mslk kernels.
        return Int4WeightOnlyConfig(group_size=INT4_GROUP, int4_packing_format="tile_packed_to_4d",
                                    set_inductor_config=False)
    return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), set_inductor_config=False)


def make_filter(scheme: str):
    """Which modules torchao takes: linears with enough rows and shapes its kernels accept."""

    def take(module: torch.nn.Module, name: str) -> bool:
        if not isinstance(module, torch.nn.Linear):
            return False
        if any(part in name for part in SMALL_ROW_LINEARS):
            return False
        if scheme == "int4-weight-only":
            return module.in_features % INT4_GROUP == 0 and module.out_features % 8 == 0
        if scheme == "fp8-dynamic":
            return module.in_features % 16 == 0 and module.out_features % 16 == 0
        return True

    return take


def quantize_unet(unet, scheme: str) -> dict:
    """Quantize the UNet in place; returns what was done (layers taken/skipped, sizes)."""
    from torchao.quantization import quantize_

    param = next(unet.parameters())
    check_supported(scheme, param.device, param.dtype)
    take = make_filter(scheme)
    linears = {n: m for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear)}
    taken = [n for n, m in linears.items() if take(m, n)]
    before = module_bytes(unet)
    quantize_(unet, config_for(scheme), filter_fn=take)
    import torch._inductor.config as inductor_config

    if scheme.startswith("int8") and hasattr(inductor_config, "force_fuse_int_mm_with_mul"):
        inductor_config.force_fuse_int_mm_with_mul = True
    return {
        "scheme": scheme,
        "linears_quantized": len(taken),
        "linears_kept_float": len(linears) - len(taken),
        "unet_bytes_before": before,
        "unet_bytes_memory": module_bytes(unet),
        "unet_bytes_disk": serialized_bytes(unet),
    }


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes the module's parameters and buffers occupy, low-bit tensor subclasses included."""
    from torchao.utils import get_model_size_in_bytes

    return int(get_model_size_in_bytes(module))


def serialized_bytes(module: torch.nn.Module) -> int:
    """Size of ``torch.save(state_dict)`` (safetensors cannot hold torchao's tensor subclasses)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@dataclass(frozen=True)
class LowBitConfig(TechniqueConfig):
    """Variant keys ``lowbit`` (a scheme of SCHEMES, "none" = off) and ``lowbit_smoothquant``
    (SmoothQuant's alpha for the static fp8/int8 schemes' linears; 0 = no smoothing)."""

    lowbit: str = "none"
    lowbit_smoothquant: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.lowbit != "none"


def apply(prepared, config: LowBitConfig) -> None:
    if config.lowbit in STATIC_SCOPES:
        prepared.notes["lowbit"] = quantize_static(prepared.pipe, config, prepared.spec)
        return
    if config.lowbit_smoothquant:
        raise ValueError("lowbit_smoothquant applies to the static fp8 and int8 schemes "
                         f"({', '.join(STATIC_SCOPES)}), not '{config.lowbit}'")
    prepared.notes["lowbit"] = quantize_unet(prepared.pipe.unet, config.lowbit)


def quantize_static(pipe, config: LowBitConfig, spec: dict) -> dict:
    """Static-scale fp8 or int8 layers, calibrated on the variant's own generation settings."""
    from . import fp8static

    param = next(pipe.unet.parameters())
    check_supported(config.lowbit, param.device, param.dtype)
    before = module_bytes(pipe.unet)
    generation = {key: spec[key] for key in ("height", "width", "steps", "guidance")}
    notes = fp8static.quantize_unet(pipe, STATIC_SCOPES[config.lowbit], generation, skip=SMALL_ROW_LINEARS,
                                    smoothquant=float(config.lowbit_smoothquant), fmt=static_format(config.lowbit))
    return {"scheme": config.lowbit, **notes, "unet_bytes_before": before,
            "unet_bytes_memory": module_bytes(pipe.unet), "unet_bytes_disk": serialized_bytes(pipe.unet)}
