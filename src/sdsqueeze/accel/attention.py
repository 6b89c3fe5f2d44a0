"""The attention technique: every value of the ``attention`` key (classic, sdpa, a pinned SDPA
backend), fused QKV projections and a cross-attention K/V cache.

All are diffusers attention processors (``Attention.set_processor``), so no diffusers file is
patched. The backend is pinned with ``torch.nn.attention.sdpa_kernel``; a backend that cannot
run the given shapes/dtype/device makes torch raise "No available kernel", never a fallback.
"""

from __future__ import annotations

import weakref
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from ..technique import TechniqueConfig

# attention enum value -> torch SDPA backend
SDPA_BACKENDS = {
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "math": "MATH",
    "cudnn": "CUDNN_ATTENTION",
}
# aten ops that SDPA dispatches to, by backend (what the profiler sees)
SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


def sdpa_context(backend: str | None):
    """The context that restricts SDPA to one backend (nullcontext: torch's own choice)."""
    if backend is None:
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, SDPA_BACKENDS[backend])])


class PinnedBackend:
    """Wraps any attention processor so its SDPA calls run on one backend only."""

    def __init__(self, inner, backend: str):
        self.inner = inner
        self.backend = backend

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        with sdpa_context(self.backend):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                              *args, **kwargs)


class CrossAttentionKVCache(AttnProcessor2_0):
    """AttnProcessor2_0 that projects the text's keys/values once per prompt batch, not per step.

    Cross-attention's K = W_k·text and V = W_v·text depend only on the prompt embeddings, which the
    pipeline passes unchanged to every step. The cache is keyed on the identity of that tensor (a
    weak reference, so a freed tensor whose memory is reused cannot alias) and its version counter
    (an in-place edit invalidates it); any other tensor recomputes. One instance per Attention
    module, since each module has its own projections.
    """

    def __init__(self):
        super().__init__()
        self.hits = 0
        self.misses = 0
        self._source = None  # weakref to the encoder_hidden_states the cache was built from
        self._version = None
        self._kv = None

    def reset(self) -> None:
        self._source, self._version, self._kv = None, None, None

    @staticmethod
    def _version_of(tensor: torch.Tensor):
        try:
            return tensor._version
        except RuntimeError:  # inference tensors carry no version counter (and cannot be edited in place)
            return None

    def _cached_kv(self, attn, encoder_hidden_states):
        source = self._source() if self._source is not None else None
        version = self._version_of(encoder_hidden_states)
        if source is encoder_hidden_states and version == self._version and self._kv is not None:
            self.hits += 1
            return self._kv
        self.misses += 1
        context = encoder_hidden_states
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        self._kv = (attn.to_k(context), attn.to_v(context))
        self._source = weakref.ref(encoder_hidden_states)
        self._version = version
        return self._kv

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        plain = (encoder_hidden_states is None or attention_mask is not None
                 or attn.spatial_norm is not None or attn.group_norm is not None
                 or attn.norm_q is not None or attn.norm_k is not None)
        if plain:  # self-attention (or a variant this cache does not cover): the stock processor
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        key, value = self._cached_kv(attn, encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
                             for x in (query, key, value))
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, dropout_p=0.0,
                                                               is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install_kv_cache(unet) -> dict[str, CrossAttentionKVCache]:
    """One cache processor per attention module of the UNet; returns them by module name."""
    processors = {name: CrossAttentionKVCache() for name in unet.attn_processors}
    unet.set_attn_processor(dict(processors))
    return processors


def pin_backend(module, backend: str) -> None:
    """Wrap every attention processor of ``module`` so SDPA runs on ``backend`` only."""
    current = module.attn_processors
    module.set_attn_processor({name: PinnedBackend(p, backend) for name, p in current.items()})


def observed_sdpa_backends(run) -> dict[str, int]:
    """Run ``run()`` under the profiler; count the SDPA backend ops that actually executed."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    counts: dict[str, int] = {}
    for event in prof.events():
        backend = SDPA_OPS.get(event.name)
        if backend:
            counts[backend] = counts.get(backend, 0) + 1
    return counts


@dataclass(frozen=True)
class AttentionConfig(TechniqueConfig):
    """Variant keys ``attention``, ``fuse_qkv``, ``kv_cache`` (schemas/config.schema.yaml)."""

    attention: str = "default"  # default keeps the model's processors
    fuse_qkv: bool = False
    kv_cache: bool = False


def attention_layers(module) -> dict:
    """name -> diffusers Attention of a model, for models without ``set_attn_processor``
    (UNet2DModel, the unconditional pipelines' UNet)."""
    from diffusers.models.attention_processor import Attention

    return {name: m for name, m in module.named_modules() if isinstance(m, Attention)}


def set_processor(prepared, config: AttentionConfig) -> None:
    """classic = diffusers' AttnProcessor (explicit softmax(QK^T)V); sdpa = AttnProcessor2_0.

    Registered before PTQ, which measures its activation ranges through these processors; the
    backend pin, fused QKV and the K/V cache (``apply``) come after it."""
    kind = config.attention
    processor = {"classic": AttnProcessor, "sdpa": AttnProcessor2_0}.get(kind)
    if processor is None:
        return  # other kinds are owned by later techniques
    for name in ("unet", "transformer", "vae", "vqvae"):
        module = getattr(prepared.pipe, name, None)
        if module is not None and not hasattr(module, "set_attn_processor"):
            for attn in attention_layers(module).values():  # UNet2DModel: no model-wide setter
                attn.set_processor(processor())
        elif module is not None:
            try:
                module.set_attn_processor(processor())
            except (ValueError, TypeError):
                # SD3's transformer uses joint-attention processors a plain one cannot replace.
                if name != "vae":
                    raise ValueError(
                        f"attention '{kind}' cannot be set on {type(module).__name__}; "
                        "use attention: default for this model"
                    ) from None
    prepared.notes["attention"] = kind


def _attention_modules(pipe):
    return [m for m in (getattr(pipe, "unet", None), getattr(pipe, "vae", None), getattr(pipe, "vqvae", None))
            if m is not None and hasattr(m, "set_attn_processor")]


def _probe_inputs(pipe, spec: dict):
    """One UNet call's inputs at the variant's size and batch (classifier-free guidance doubles it);
    no text context for an unconditional UNet, which samples at its own size."""
    unet = pipe.unet
    param = next(unet.parameters())
    if getattr(unet.config, "cross_attention_dim", None) is None:
        from ..uncond import sample_shape

        generator = torch.Generator().manual_seed(0)
        sample = torch.randn((int(spec["batch_size"]), *sample_shape(pipe)), generator=generator)
        return sample.to(param.device, param.dtype), torch.tensor(500, device=param.device), None
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
        counts = observed_sdpa_backends(lambda: pipe.unet(sample, timestep, *([] if context is None else [context])))
    prepared.notes["sdpa_backends_ran"] = counts or "none (no SDPA call: classic attention)"


def apply(prepared, config: AttentionConfig) -> None:
    """A pinned SDPA backend, fused QKV projections and the K/V cache, as the config asks."""
    pipe = prepared.pipe
    kind = config.attention
    backend = kind if kind in SDPA_BACKENDS else None
    if backend:
        for module in _attention_modules(pipe):
            module.set_attn_processor(AttnProcessor2_0())
    if config.fuse_qkv:
        if kind == "classic":
            raise ValueError("fuse_qkv uses diffusers' FusedAttnProcessor2_0 (SDPA); it cannot "
                             "be combined with attention: classic")
        for module in _attention_modules(pipe):
            module.fuse_qkv_projections()
        prepared.notes["fuse_qkv"] = "FusedAttnProcessor2_0 on " + ", ".join(
            type(m).__name__ for m in _attention_modules(pipe))
    if config.kv_cache:
        if kind == "classic" or config.fuse_qkv:
            raise ValueError("kv_cache is an SDPA processor: use attention sdpa or a backend "
                             "(flash|efficient|math|cudnn), without fuse_qkv")
        caches = install_kv_cache(pipe.unet)
        prepared.notes["kv_cache"] = f"{len(caches)} UNet attention modules"
        prepared.kv_caches = caches
    if backend:
        # UNet only: the VAE's single attention has head dim 512, which flash and cuDNN attention
        # do not take (<= 256), so it keeps torch's own SDPA choice.
        pin_backend(pipe.unet, backend)
        prepared.notes["sdpa_backend_pinned"] = f"{backend} (UNet)"
    if kind != "classic" and getattr(pipe, "unet", None) is not None:
        record_sdpa_backends(prepared)
