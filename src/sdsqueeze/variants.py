"""A variant is data: one function turns a variant's spec into a configured pipeline.

``resolve_variant`` merges the config's ``generation`` defaults with one variant's overrides;
``prepare`` applies the result to a freshly loaded pipeline. Each technique is a function
``(pipe, spec, prepared) -> None`` in ``TECHNIQUES``; later stages (quantization, compilation,
caching) add theirs there. Techniques mutate only the pipeline they are given, which is
always a fresh load, so the cached model on disk is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .quant import apply_ptq
from .accel import apply_acceleration

SCHEDULERS = {
    "pndm": ("PNDMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "default": (None, {}),  # keep the model's own scheduler (e.g. flow matching for SD3)
}
GENERATION_KEYS = (
    "dtype", "attention", "scheduler", "steps", "guidance", "height", "width", "batch_size",
)


@dataclass
class Prepared:
    """A pipeline ready to generate, plus what the techniques add to each call and record."""

    pipe: Any
    spec: dict
    call_kwargs: dict = field(default_factory=dict)
    step_callbacks: list[Callable] = field(default_factory=list)
    notes: dict = field(default_factory=dict)


def resolve_variant(config: dict, name: str) -> dict:
    """The full spec of one variant: generation defaults overridden by the variant's keys."""
    if name not in config["variants"]:
        raise KeyError(f"unknown variant '{name}'; configured: {sorted(config['variants'])}")
    spec = {**config["generation"], **(config["variants"][name] or {})}
    spec["name"] = name
    return spec


def set_attention(prepared: Prepared) -> None:
    """classic = diffusers' AttnProcessor (explicit softmax(QK^T)V); sdpa = AttnProcessor2_0."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    kind = prepared.spec["attention"]
    processor = {"classic": AttnProcessor, "sdpa": AttnProcessor2_0}.get(kind)
    if processor is None:
        return  # other kinds are owned by later techniques
    for name in ("unet", "transformer", "vae"):
        module = getattr(prepared.pipe, name, None)
        if module is not None and hasattr(module, "set_attn_processor"):
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


def set_scheduler(prepared: Prepared) -> None:
    import diffusers

    class_name, overrides = SCHEDULERS[prepared.spec["scheduler"]]
    if class_name is None:
        return
    scheduler_cls = getattr(diffusers, class_name)
    pipe = prepared.pipe
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config, **overrides)
    prepared.notes["scheduler"] = class_name


TECHNIQUES: list[Callable[[Prepared], None]] = [set_scheduler, set_attention]
TECHNIQUES.append(apply_ptq)  # sdsqueeze.quant: simulated W/A post-training quantization
TECHNIQUES.append(apply_acceleration)  # sdsqueeze.accel: SDPA backends, K/V + feature caches, low-bit, compile


def prepare(pipe, spec: dict) -> Prepared:
    prepared = Prepared(pipe=pipe, spec=spec)
    for technique in TECHNIQUES:
        technique(prepared)
    return prepared
