"""The acceleration technique: reads a variant's acceleration keys and applies them in the one
order that composes (processors -> feature cache -> low-bit -> memory format -> compile).

Keys (schemas/config.schema.yaml): attention (flash|efficient|math|cudnn pin an SDPA backend),
fuse_qkv, kv_cache, deepcache, lowbit, channels_last, compile, compile_vae, inductor_tuning,
freeze_weights, cudnn_benchmark, host_timesteps. Every key absent or
off leaves the pipeline untouched; what ran is recorded in ``prepared.notes``.
"""

from __future__ import annotations

import torch

from . import attention, deepcache, hoststeps, lowbit

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")
# The Inductor settings of diffusers' SDXL speed-up guide ("Accelerate inference of text-to-image
# diffusion models"): 1x1 convolutions (SD's attention proj_in/proj_out, resnet shortcuts) become
# cuBLAS matmuls, Triton kernels get coordinate-descent block-size tuning.
INDUCTOR_TUNING = {"conv_1x1_as_mm": True, "coordinate_descent_tuning": True, "epilogue_fusion": False}


def _attention_modules(pipe):
    return [m for m in (getattr(pipe, "unet", None), getattr(pipe, "vae", None))
            if m is not None and hasattr(m, "set_attn_processor")]


def _probe_inputs(pipe, spec: dict):
    """One UNet call's inputs at the variant's size and batch (classifier-free guidance doubles it)."""
    unet = pipe.unet
    param = next(unet.parameters())
    rows = int(spec["batch_size"]) * (2 if float(spec["guidance"]) > 1 else 1)
    factor = getattr(pipe, "vae_scale_factor", 8)
    shape = (rows, unet.config.in_channels, int(spec["height"]) // factor, int(spec["width"]) // factor)
    tokens = getattr(getattr(pipe, "tokenizer", None), "model_max_length", 77)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(shape, generator=generator).to(param.device, param.dtype)
    context = torch.randn((rows, tokens, unet.config.cross_attention_dim), generator=generator)
    return sample, torch.tensor(500, device=param.device), context.to(param.device, param.dtype)


def record_sdpa_backends(prepared) -> None:
    """Which SDPA kernels actually ran: profile one eager UNet call at the variant's shapes."""
    pipe, spec = prepared.pipe, prepared.spec
    sample, timestep, context = _probe_inputs(pipe, spec)
    with torch.inference_mode():
        counts = attention.observed_sdpa_backends(lambda: pipe.unet(sample, timestep, context))
    prepared.notes["sdpa_backends_ran"] = counts or "none (no SDPA call: classic attention)"


def apply_processors(prepared) -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe, spec = prepared.pipe, prepared.spec
    kind = spec.get("attention")
    backend = kind if kind in attention.SDPA_BACKENDS else None
    if backend:
        for module in _attention_modules(pipe):
            module.set_attn_processor(AttnProcessor2_0())
    if spec.get("fuse_qkv"):
        if kind == "classic":
            raise ValueError("fuse_qkv uses diffusers' FusedAttnProcessor2_0 (SDPA); it cannot "
                             "be combined with attention: classic")
        for module in _attention_modules(pipe):
            module.fuse_qkv_projections()
        prepared.notes["fuse_qkv"] = "FusedAttnProcessor2_0 on " + ", ".join(
            type(m).__name__ for m in _attention_modules(pipe))
    if spec.get("kv_cache"):
        if kind == "classic" or spec.get("fuse_qkv"):
            raise ValueError("kv_cache is an SDPA processor: use attention sdpa or a backend "
                             "(flash|efficient|math|cudnn), without fuse_qkv")
        caches = attention.install_kv_cache(pipe.unet)
        prepared.notes["kv_cache"] = f"{len(caches)} UNet attention modules"
        prepared.kv_caches = caches
    if backend:
        # UNet only: the VAE's single attention has head dim 512, which flash and cuDNN attention
        # do not take (<= 256), so it keeps torch's own SDPA choice.
        attention.pin_backend(pipe.unet, backend)
        prepared.notes["sdpa_backend_pinned"] = f"{backend} (UNet)"
    if kind != "classic" and getattr(pipe, "unet", None) is not None:
        record_sdpa_backends(prepared)


def apply_deepcache(prepared) -> None:
    interval = int(prepared.spec.get("deepcache") or 0)
    if interval == 0:
        return
    if prepared.spec.get("compile") in ("reduce-overhead", "max-autotune"):
        # The kept deep features are outputs of a CUDA-graph replay,
        # which the next replay overwrites ("accessing tensor output of CUDAGraphs that has been
        # overwritten"). Use compile: default or max-autotune-no-cudagraphs with deepcache.
        raise ValueError("deepcache cannot be combined with a CUDA-graph compile mode "
                         f"('{prepared.spec['compile']}'); use compile: default or none")
    state, callback = deepcache.install_deepcache(prepared.pipe.unet, interval)
    prepared.step_callbacks.append(callback)
    prepared.deepcache = state
    prepared.notes["deepcache"] = {"interval": interval,
                                   "skipped": sorted(deepcache.deep_modules(prepared.pipe.unet))}


def apply_lowbit(prepared) -> None:
    scheme = prepared.spec.get("lowbit") or "none"
    if scheme == "none":
        return
    prepared.notes["lowbit"] = lowbit.quantize_unet(prepared.pipe.unet, scheme)


def apply_compile(prepared) -> None:
    pipe, spec = prepared.pipe, prepared.spec
    if spec.get("channels_last"):
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        prepared.notes["channels_last"] = True
    if spec.get("cudnn_benchmark"):
        # Process-wide: a job runs one variant (the GPU benchmark restores it between variants).
        torch.backends.cudnn.benchmark = True
        prepared.notes["cudnn_benchmark"] = True
    mode = spec.get("compile") or "none"
    if mode == "none":
        if spec.get("inductor_tuning") or spec.get("freeze_weights"):
            raise ValueError("inductor_tuning and freeze_weights apply to torch.compile: "
                             "set compile to a mode too")
        return
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be none or one of {COMPILE_MODES}, not '{mode}'")
    compile_kwargs = {"mode": mode}
    extra = {**(INDUCTOR_TUNING if spec.get("inductor_tuning") else {}),
             **({"freezing": True} if spec.get("freeze_weights") else {})}
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
    if spec.get("compile_vae"):
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


def apply_host_timesteps(prepared) -> None:
    if not prepared.spec.get("host_timesteps"):
        return
    prepared.host_timesteps = hoststeps.keep_timesteps_on_host(prepared.pipe)
    prepared.notes["host_timesteps"] = type(prepared.pipe.scheduler).__name__ + " timesteps on the host"


def apply_acceleration(prepared) -> None:
    """The one TECHNIQUES entry of this package; a no-op for a variant with none of its keys."""
    apply_processors(prepared)
    apply_deepcache(prepared)
    apply_lowbit(prepared)
    apply_compile(prepared)
    apply_host_timesteps(prepared)  # last: its hook must sit outside the compiled UNet
