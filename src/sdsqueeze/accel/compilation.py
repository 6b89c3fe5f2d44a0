"""The compile technique: torch.compile of the UNet (and the VAE decoder), channels_last memory
format and cuDNN's algorithm timing, the settings that shape what the compiled graphs run."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..technique import TechniqueConfig
from .geglu import use_fused_geglu
from .groupnorm import use_channels_last_group_norm

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")
# The Inductor settings of diffusers' SDXL speed-up guide ("Accelerate inference of text-to-image
# diffusion models"): 1x1 convolutions (SD's attention proj_in/proj_out, resnet shortcuts) become
# cuBLAS matmuls, Triton kernels get coordinate-descent block-size tuning.
INDUCTOR_TUNING = {"conv_1x1_as_mm": True, "coordinate_descent_tuning": True, "epilogue_fusion": False}


@dataclass(frozen=True)
class CompileConfig(TechniqueConfig):
    """Variant keys ``compile`` (a mode of COMPILE_MODES or none), ``compile_vae``, ``channels_last``,
    ``channels_last_groupnorm``, ``fused_geglu``, ``conv_1x1_as_mm``, ``inductor_tuning``,
    ``freeze_weights``, ``cudnn_benchmark``."""

    compile: str = "none"
    compile_vae: bool = False
    channels_last: bool = False
    channels_last_groupnorm: bool = False
    fused_geglu: bool = False
    conv_1x1_as_mm: bool = False
    inductor_tuning: bool = False
    freeze_weights: bool = False
    cudnn_benchmark: bool = False

    @property
    def enabled(self) -> bool:
        return self != CompileConfig()


def apply(prepared, config: CompileConfig) -> None:
    pipe = prepared.pipe
    if config.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        prepared.notes["channels_last"] = True
    if config.channels_last_groupnorm:
        if not config.channels_last:
            raise ValueError("channels_last_groupnorm reads channels_last activations: set channels_last too")
        swapped = use_channels_last_group_norm(pipe.unet, pipe.vae)
        prepared.notes["channels_last_groupnorm"] = f"{swapped} GroupNorm modules"
    if config.fused_geglu:
        prepared.notes["fused_geglu"] = f"{use_fused_geglu(pipe.unet)} GEGLU modules"
    if config.cudnn_benchmark:
        # Process-wide: a job runs one variant (the GPU benchmark restores it between variants).
        torch.backends.cudnn.benchmark = True
        prepared.notes["cudnn_benchmark"] = True
    mode = config.compile
    if mode == "none":
        if config.inductor_tuning or config.freeze_weights or config.conv_1x1_as_mm:
            raise ValueError("inductor_tuning, conv_1x1_as_mm and freeze_weights apply to torch.compile: "
                             "set compile to a mode too")
        return
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be none or one of {COMPILE_MODES}, not '{mode}'")
    compile_kwargs = {"mode": mode}
    extra = {**(INDUCTOR_TUNING if config.inductor_tuning else {}),
             # Alone, without the guide's slow coordinate-descent tuning: at batch 8 cuBLAS ran SD's
             # 1x1 convolutions' GEMMs faster than cuDNN ran them as convolutions (H200).
             **({"conv_1x1_as_mm": True} if config.conv_1x1_as_mm else {}),
             **({"freezing": True} if config.freeze_weights else {})}
    if extra:
        # torch.compile takes a mode or options, not both: spell the mode out as its options.
        from torch._inductor import list_mode_options

        compile_kwargs = {"options": {**list_mode_options(mode), **extra}}
    # dynamic=False: one static graph per batch size. By default Dynamo answers a second batch
    # size with one dynamic-shape graph for all sizes, and its kernels were slower: on an H100,
    # batch-4 steps timed after a batch-1 call were measurably slower than before it.
    compile_kwargs["dynamic"] = False
    pipe.unet = torch.compile(pipe.unet, **compile_kwargs)
    compiled = ["unet"]
    if config.compile_vae:
        pipe.vae.decoder = torch.compile(pipe.vae.decoder, **compile_kwargs)
        compiled.append("vae.decoder")
    if "cudagraphs" not in mode and mode in ("reduce-overhead", "max-autotune"):
        # CUDA-graph trees reuse output memory between replays; marking each step's start tells
        # them the previous step's outputs are consumed (the scheduler has read them).
        prepared.step_callbacks.append(_mark_cudagraph_step)
    prepared.notes["compile"] = {"mode": mode, "modules": compiled,
                                 "inductor_options": compile_kwargs.get("options", "mode defaults"),
                                 "dynamic": compile_kwargs["dynamic"]}


def _mark_cudagraph_step(pipe, step, timestep, callback_kwargs):
    torch.compiler.cudagraph_mark_step_begin()
    return callback_kwargs
