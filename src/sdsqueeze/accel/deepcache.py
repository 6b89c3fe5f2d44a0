"""DeepCache-style feature caching (Ma et al., 2023): reuse the UNet's deep features for N steps.

On a full step the whole UNet runs and the outputs of its deep part are kept: every down block
but the first, the mid block and every up block but the last. On the N-1 steps that follow, those
modules return their kept outputs without computing, so only conv_in, the first down block, the
last up block and conv_out run; the skip connections the last up block reads come from the first
down block and are fresh. Written by hand because diffusers has no feature-caching helper for
UNet2DConditionModel (its cache hooks target transformer models); it wraps module ``forward``s
at run time and leaves diffusers' files untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..technique import TechniqueConfig


@dataclass
class DeepCacheState:
    interval: int
    step: int = 0  # the pipeline step the next UNet call belongs to
    full_steps: int = 0
    cached_steps: int = 0
    outputs: dict = field(default_factory=dict)

    @property
    def reuse(self) -> bool:
        return self.step % self.interval != 0 and bool(self.outputs)


def deep_modules(unet) -> dict[str, object]:
    """The modules skipped on cached steps, by name."""
    modules = {f"down_blocks.{i}": b for i, b in enumerate(unet.down_blocks) if i > 0}
    if unet.mid_block is not None:
        modules["mid_block"] = unet.mid_block
    last = len(unet.up_blocks) - 1
    modules.update({f"up_blocks.{i}": b for i, b in enumerate(unet.up_blocks) if i < last})
    return modules


def _wrap(name: str, module, state: DeepCacheState) -> None:
    compute = module.forward

    def forward(*args, **kwargs):
        if state.reuse:
            return state.outputs[name]
        out = compute(*args, **kwargs)
        state.outputs[name] = out
        return out

    module.forward = forward  # instance attribute: shadows the class's forward for this module only


def install_deepcache(unet, interval: int):
    """Wrap the UNet's deep modules; returns (state, step callback advancing the step counter)."""
    if interval < 2:
        raise ValueError(f"deepcache interval must be >= 2 (got {interval}); 0 or absent turns it off")
    state = DeepCacheState(interval=interval)
    for name, module in deep_modules(unet).items():
        _wrap(name, module, state)

    def on_step_end(pipe, step, timestep, callback_kwargs):
        if state.reuse:
            state.cached_steps += 1
        else:
            state.full_steps += 1
        # The last step of a generation resets the counter, so each call starts with a full step.
        state.step = 0 if step + 1 >= pipe.num_timesteps else step + 1
        if state.step == 0:
            state.outputs.clear()
        return callback_kwargs

    return state, on_step_end


@dataclass(frozen=True)
class DeepCacheConfig(TechniqueConfig):
    """Variant key ``deepcache``: the interval of full UNet steps (0 = off)."""

    deepcache: int = 0

    @property
    def enabled(self) -> bool:
        return int(self.deepcache) > 0


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def apply(prepared, config: DeepCacheConfig) -> None:
    interval = int(config.deepcache)
    if prepared.spec.get("compile") in CUDA_GRAPH_MODES:
        # The kept deep features are outputs of a CUDA-graph replay, which the next replay
        # overwrites ("accessing tensor output of CUDAGraphs that has been overwritten").
        raise ValueError("deepcache cannot be combined with a CUDA-graph compile mode "
                         f"('{prepared.spec['compile']}'); use compile: default or none")
    state, callback = install_deepcache(prepared.pipe.unet, interval)
    prepared.step_callbacks.append(callback)
    prepared.deepcache = state
    prepared.notes["deepcache"] = {"interval": interval, "skipped": sorted(deep_modules(prepared.pipe.unet))}
