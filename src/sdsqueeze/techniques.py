"""The technique registry: every way a variant changes the pipeline, in the one order that composes.

Scheduler first; attention processors before PTQ, which measures activation ranges through them;
then the attention specialisations that replace or wrap the calibrated layers (backend pin, fused
QKV, K/V cache); DeepCache's feature cache; low-bit kernels on the final weights; the UNet swapped
for its ONNX Runtime session (exclusive with the PyTorch-only ones, checked with the config);
compilation of the result; timesteps on the host last, so its hook sits outside the compiled UNet. Adding a
technique: one module with a frozen config (sdsqueeze.technique.TechniqueConfig) and an ``apply``,
one line here, its keys in schemas/config.schema.yaml (docs/architecture.md shows an example).
"""

from __future__ import annotations

from . import schedulers
from .accel import attention, compilation, deepcache, hoststeps, lowbit, onnxrt
from .quant import ptq
from .technique import Technique


def _apply_ptq(prepared, spec: ptq.PTQSpec) -> None:
    ptq.apply_ptq(prepared)  # quant/ptq.py reads its PTQSpec from the variant itself


TECHNIQUES: tuple[Technique, ...] = (
    Technique.of(schedulers.SchedulerConfig, schedulers.apply),
    Technique.of(attention.AttentionConfig, attention.set_processor),
    Technique(("ptq",), ptq.PTQSpec.from_variant, _apply_ptq),
    Technique.of(attention.AttentionConfig, attention.apply),
    Technique.of(deepcache.DeepCacheConfig, deepcache.apply),
    Technique.of(lowbit.LowBitConfig, lowbit.apply),
    Technique.of(onnxrt.OnnxRuntimeConfig, onnxrt.apply),
    Technique.of(compilation.CompileConfig, compilation.apply),
    Technique.of(hoststeps.HostTimestepsConfig, hoststeps.apply),
)


def variant_keys() -> set[str]:
    """Every variant key a technique owns (the schema's variant keys, less the generation ones)."""
    return {key for technique in TECHNIQUES for key in technique.keys}
