"""Scheduler timesteps kept on the host, so the denoising loop never waits for the GPU.

diffusers' pipelines put the scheduler's timesteps on the execution device. PNDM and DDIM then
index their host-side tables (``alphas_cumprod``) with a GPU tensor and compare it with 0, and each
such read makes the host wait until the GPU has finished the step. The host can then not queue the
next step while the GPU works: at batch 1 the GPU idles between steps (well under fully busy
in the committed benchmark profiles, benchmarks/results/), and the host's work before each CUDA-graph replay lands
inside the measured step.

With ``host_timesteps`` the scheduler keeps its timesteps on the host, so its arithmetic is host
arithmetic and the loop never synchronises. The UNet still wants its timestep on the device: one
copy of all of a generation's timesteps is made when the schedule is set, and a forward pre-hook on
the UNet swaps each host timestep for its device copy. The images are the same; only where the
timestep lives changes. Written by hand: diffusers has no switch for where timesteps live.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..technique import TechniqueConfig


class HostTimesteps:
    """Wraps a scheduler's ``set_timesteps`` and hooks the UNet; one instance per pipeline."""

    def __init__(self):
        self.on_device: dict[float, torch.Tensor] = {}

    def wrap_scheduler(self, scheduler) -> None:
        """Make ``scheduler.set_timesteps(..., device=d)`` keep timesteps on the host and copy
        them to ``d`` once. Call again for every scheduler the pipeline is given."""
        set_timesteps = scheduler.set_timesteps

        def set_timesteps_on_host(*args, device=None, **kwargs):
            set_timesteps(*args, device="cpu", **kwargs)
            self.on_device = {}
            if device is not None and torch.device(device).type != "cpu":
                copies = scheduler.timesteps.to(device)  # one copy per generation, not one per step
                self.on_device = dict(zip(scheduler.timesteps.tolist(), copies))

        scheduler.set_timesteps = set_timesteps_on_host  # this instance only; the class is untouched

    def device_timestep(self, timestep, sample):
        if not (isinstance(timestep, torch.Tensor) and timestep.ndim == 0 and timestep.device.type == "cpu"):
            return timestep
        if sample.device.type == "cpu":
            return timestep
        copy = self.on_device.get(float(timestep))
        # A timestep outside the schedule (a caller's own loop) is copied, with the wait that costs.
        return copy if copy is not None else timestep.to(sample.device)

    def unet_pre_hook(self, module, args, kwargs):
        if len(args) >= 2:
            return (args[0], self.device_timestep(args[1], args[0]), *args[2:]), kwargs
        if "timestep" in kwargs:
            sample = args[0] if args else kwargs["sample"]
            return args, {**kwargs, "timestep": self.device_timestep(kwargs["timestep"], sample)}
        return None


def keep_timesteps_on_host(pipe) -> HostTimesteps:
    """Install on a UNet pipeline (SD 1.x/2.x, SDXL); call after compilation, so the hook sits
    on the module the pipeline calls, outside any compiled region."""
    if getattr(pipe, "unet", None) is None:
        raise ValueError("host_timesteps needs a UNet pipeline (SD 1.x/2.x, SDXL); "
                         f"{type(pipe).__name__} has none: remove host_timesteps from this variant")
    state = HostTimesteps()
    state.wrap_scheduler(pipe.scheduler)
    pipe.unet.register_forward_pre_hook(state.unet_pre_hook, with_kwargs=True)
    return state


@dataclass(frozen=True)
class HostTimestepsConfig(TechniqueConfig):
    """Variant key ``host_timesteps``."""

    host_timesteps: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.host_timesteps)


def apply(prepared, config: HostTimestepsConfig) -> None:
    """Registered last: its hook must sit outside the compiled UNet."""
    prepared.host_timesteps = keep_timesteps_on_host(prepared.pipe)
    prepared.notes["host_timesteps"] = type(prepared.pipe.scheduler).__name__ + " timesteps on the host"
