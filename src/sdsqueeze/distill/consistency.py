"""Latent consistency distillation (LCM, Luo et al.), as diffusers' example
``train_lcm_distill_sd_wds.py`` does it, on the cached teacher data instead of a web dataset.

Each iteration: a noise level t_{n+k} from the skipping-step grid (T / ``num_ddim_timesteps`` apart),
the teacher's guided one-step DDIM solve from t_{n+k} to t_n (classifier-free guidance with w, the
guidance weight the student takes as input), and the consistency loss between the student's
boundary-conditioned x0 at t_{n+k} and the EMA target network's at t_n. The student samples with
diffusers' ``LCMScheduler`` (its multistep sampler: predict x0, re-noise to the next grid point) at
1, 2, 4 or 8 steps, through the stock StableDiffusionPipeline (guidance_scale = 1 + w).

``guidance: cfg`` keeps classifier-free guidance in the student instead of the guidance input (as
progressive distillation's "cfg" mode, docs/distillation.md): its consistency function is taken on
its guided output, the student starts as the teacher and samples with two UNet calls per step.

Note: LCMScheduler re-noises between steps, so a seeded ``generator`` must be passed to the
pipeline call for reproducible images.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .common import (
    GUIDANCE_EMBEDDING_DIM,
    NoiseSchedule,
    ddim_step,
    draw_batch,
    frozen,
    guided_eps,
    linear_decay,
    scheduler_config,
    x0_from_eps,
)
from .loop import read_log, train
from .progressive import guidance_step, guided_student, run_phase, student_eps

SIGMA_DATA = 0.5  # LCMScheduler's boundary-condition constant
SAMPLERS = {"lcm": "LCMScheduler", "tcd": "TCDScheduler"}


@dataclass(frozen=True)
class ConsistencySettings:
    iters: int = 300
    # Guidance warm start (0 = off, LCM's own start from the teacher): this many iterations of
    # guided progressive distillation's stage 1 first, so the student knows guidance before it
    # learns consistency; a short CPU run cannot teach both from the consistency loss alone.
    guidance_iters: int = 0
    batch_size: int = 8
    lr: float = 1e-4
    w_range: tuple[float, float] = (3.0, 15.0)  # the LCM script's w_min, w_max (w = guidance_scale - 1)
    num_ddim_timesteps: int = 50     # the skipping-step solver's grid: k = T / this
    # DDIM steps the teacher's solver takes over each skip (LCM: 1); more make the solver exact on a
    # coarse grid, whose few levels the consistency target crosses in a short run
    solver_substeps: int = 1
    ema_decay: float = 0.95
    loss: str = "huber"              # or "l2"
    huber_c: float = 0.001
    timestep_scaling: float = 10.0   # LCMScheduler's default; the boundary conditions use it
    # The student's sampler: "lcm" = LCMScheduler (LCM's multistep sampler, re-noises with fresh
    # noise), "tcd" = TCDScheduler at gamma 0 (the same x0 estimates, re-noised along the estimated
    # epsilon: deterministic, so the image stays tied to its initial noise)
    sampler: str = "lcm"
    guidance: str = "embedded"       # or "cfg": the student keeps classifier-free guidance (no warm start)
    cond_dim: int = GUIDANCE_EMBEDDING_DIM
    seed: int = 0
    ckpt_every: int = 50
    bf16: bool = False
    gradient_checkpointing: bool = False
    max_grad_norm: float | None = 1.0
    progress: bool = True

    def __post_init__(self):
        if self.loss not in ("huber", "l2"):
            raise ValueError(f"loss must be 'huber' or 'l2', got {self.loss!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {self.sampler!r}")
        if self.guidance not in ("embedded", "cfg"):
            raise ValueError(f"guidance must be 'embedded' or 'cfg', got {self.guidance!r}")
        if self.solver_substeps < 1:
            raise ValueError(f"solver_substeps must be at least 1, got {self.solver_substeps}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


def sampler_config(config, settings: ConsistencySettings) -> dict:
    """The config of the scheduler the student samples with (``settings.sampler``): the teacher's
    noise schedule, the grid it was distilled on and its boundary-condition scaling."""
    import inspect

    import diffusers

    cls = getattr(diffusers, SAMPLERS[settings.sampler])
    accepted = inspect.signature(cls.__init__).parameters  # the teacher's PNDM-only keys would be warned about
    base = {key: value for key, value in dict(config).items() if key in accepted}
    sampler = cls.from_config(base, original_inference_steps=settings.num_ddim_timesteps,
                              timestep_scaling=settings.timestep_scaling, clip_sample=False)
    return scheduler_config(sampler)


def boundary_scalings(t: torch.Tensor, timestep_scaling: float, like: torch.Tensor):
    """c_skip, c_out of LCMScheduler.get_scalings_for_boundary_condition_discrete, per sample."""
    scaled = (t.float() * timestep_scaling).view(-1, *([1] * (like.ndim - 1)))
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip, c_out


def solver_grid(num_train_timesteps: int, num_ddim_timesteps: int) -> torch.Tensor:
    """The skipping-step grid (k - 1, 2k - 1, ..., T - 1): LCMScheduler's lcm_origin_timesteps."""
    k = num_train_timesteps // num_ddim_timesteps
    return torch.arange(1, num_ddim_timesteps + 1) * k - 1


def consistency_loss(prediction, target, settings: ConsistencySettings) -> torch.Tensor:
    if settings.loss == "l2":
        return torch.nn.functional.mse_loss(prediction.float(), target.float())
    c = settings.huber_c
    return (torch.sqrt((prediction.float() - target.float()) ** 2 + c**2) - c).mean()


def _consistency_step(student, target, teacher, data, schedule, settings, device):
    grid = solver_grid(schedule.num_train_timesteps, settings.num_ddim_timesteps)
    skip = schedule.num_train_timesteps // settings.num_ddim_timesteps

    cfg = settings.guidance == "cfg"

    def denoised(unet, z, t, batch, alpha, sigma):
        """The consistency function: c_skip(t) z + c_out(t) x0(z, t)."""
        eps = student_eps(unet, z, t, batch, cfg)
        c_skip, c_out = boundary_scalings(t, settings.timestep_scaling, z)
        return c_skip * z + c_out * x0_from_eps(z, eps, alpha, sigma)

    def step(iteration, generator):
        batch = draw_batch(data, settings.batch_size, settings.w_range, settings.cond_dim, generator, device)
        start = grid[torch.randint(len(grid), (settings.batch_size,), generator=generator)].to(device)
        end = (start - skip).clamp(min=0)
        alpha, sigma = schedule.alpha_sigma(start, batch.x0)
        alpha_end, sigma_end = schedule.alpha_sigma(end, batch.x0)
        z = alpha * batch.x0 + sigma * batch.noise
        prediction = denoised(student, z, start, batch, alpha, sigma)
        with torch.no_grad():
            z_end, n = z, settings.solver_substeps
            points = [torch.div(start * (n - j) + end * j, n, rounding_mode="floor") for j in range(n + 1)]
            for t, t_next in zip(points, points[1:], strict=False):
                (a, s), (a2, s2) = schedule.alpha_sigma(t, z), schedule.alpha_sigma(t_next, z)
                eps = guided_eps(teacher, z_end, t, batch.cond, batch.uncond, batch.w)
                z_end = ddim_step(x0_from_eps(z_end, eps, a, s), eps, a2, s2)
            goal = denoised(target, z_end, end, batch, alpha_end, sigma_end)
        return consistency_loss(prediction, goal, settings)

    return step


def ema_update(target, student, decay: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), student.parameters(), strict=True):
            t.lerp_(s, 1 - decay)


def train_lcm(pipe, teacher_data, settings: ConsistencySettings, ckpt_dir) -> tuple:
    """Consistency-distil the teacher pipeline ``pipe``; returns (the EMA target UNet, the
    LCMScheduler config it samples with, a report). Student and target are both checkpointed in
    ``ckpt_dir`` and a rerun resumes from the last checkpoint."""
    ckpt_dir = Path(ckpt_dir)
    device = pipe.unet.device
    schedule = NoiseSchedule.of(pipe.scheduler.config)
    teacher = frozen(pipe.unet)
    student = guided_student(teacher, settings)
    phases = []
    if settings.guidance_iters > 0 and settings.guidance == "embedded":

        grid = solver_grid(schedule.num_train_timesteps, settings.num_ddim_timesteps)
        step = guidance_step(student, teacher, grid, teacher_data, schedule, settings, device)
        phases.append(run_phase("guidance", step, student, settings, ckpt_dir, settings.guidance_iters, desc="lcm"))
    target = frozen(copy.deepcopy(student))
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=0.0)
    step = _consistency_step(student, target, teacher, teacher_data, schedule, settings, device)
    result = train(step, {"student": student, "target": target}, optimizer, settings.iters, ckpt_dir,
                   settings.ckpt_every, settings.seed, ckpt_dir / "loss.csv",
                   lr_scheduler=linear_decay(optimizer, settings.iters),
                   after_step=lambda _: ema_update(target, student, settings.ema_decay),
                   autocast_dtype=torch.bfloat16 if settings.bf16 else None,
                   gradient_checkpointing=settings.gradient_checkpointing, max_grad_norm=settings.max_grad_norm,
                   progress=settings.progress, desc="lcm")
    losses = [row["loss"] for row in read_log(ckpt_dir / "loss.csv")]
    window = max(1, min(10, len(losses) // 4))
    report = {"method": "latent consistency distillation" + (" (CFG-aware)" if settings.guidance == "cfg" else ""),
              "guidance": settings.guidance, "settings": asdict(settings),
              "phases": phases + [{"phase": "consistency", "iterations": settings.iters, "log": str(ckpt_dir / "loss.csv"),
                          "loss_start": sum(losses[:window]) / window, "loss_end": sum(losses[-window:]) / window,
                          "iterations_per_second": result.iterations_per_second, "seconds": result.seconds,
                          "peak_memory_bytes": result.peak_memory_bytes, "resumed_from": result.resumed_from}]}
    return frozen(target), sampler_config(pipe.scheduler.config, settings), report
