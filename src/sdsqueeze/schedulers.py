"""The scheduler technique: the variant's ``scheduler`` key names a diffusers scheduler class,
built from the model's own scheduler config (steps and guidance are call arguments)."""

from __future__ import annotations

from dataclasses import dataclass

from .technique import TechniqueConfig

SCHEDULERS = {
    "pndm": ("PNDMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    # DDIM whose first step starts from pure noise (t = T - 1): what step-distilled students sample
    # with, and at few steps a stronger undistilled baseline than the model config's spacing
    "ddim-trailing": ("DDIMScheduler", {"timestep_spacing": "trailing"}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "default": (None, {}),  # keep the model's own scheduler (e.g. flow matching for SD3)
}


def set_scheduler(prepared) -> None:
    """Replace the pipeline's scheduler by the spec's (also used to swap it on a prepared build)."""
    import diffusers

    class_name, overrides = SCHEDULERS[prepared.spec["scheduler"]]
    if class_name is None:
        return
    scheduler_cls = getattr(diffusers, class_name)
    pipe = prepared.pipe
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config, **overrides)
    prepared.notes["scheduler"] = class_name


@dataclass(frozen=True)
class SchedulerConfig(TechniqueConfig):
    """Variant key ``scheduler``: a name of SCHEDULERS (steps and guidance are call arguments)."""

    scheduler: str = "default"


def apply(prepared, config: SchedulerConfig) -> None:
    set_scheduler(prepared)
