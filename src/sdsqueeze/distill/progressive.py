"""Guided progressive distillation (Meng et al., "On distillation of guided diffusion models"):
stage 1 distils classifier-free guidance into a w-conditioned student, stage 2 halves its DDIM
step count round by round (Salimans & Ho), each round's student starting from the last.

Parametrisation: SD 1.x's UNet predicts epsilon, which is ill-conditioned for few-step sampling
(x0 = (z - sigma eps) / alpha multiplies any error in eps by sigma/alpha, about 15x at t = 999).
The student keeps SD's epsilon head, so it starts as the teacher and samples with diffusers' stock
DDIMScheduler, but every loss is taken in **v-space**: ||v_student - v_target||^2 =
||x0_student - x0_target||^2 / sigma_t^2 ("SNR + 1" weighting in Salimans & Ho's terms), which
weighs the high-noise steps that a 4-step sampler depends on as the x0 error they cause.

Guidance (``guidance``): "embedded" is Meng et al.'s method above (a w-conditioned student, one UNet
call per step). "cfg" keeps classifier-free guidance in the student, as SnapFusion's CFG-aware step
distillation does: no stage 1, the student starts as the teacher, and every halving round's loss is
taken on the student's guided output eps_c + w (eps_c - eps_u) (two UNet calls per step, like the
undistilled sampler). A small UNet cannot absorb guidance into its weights within a short run: on
the embedded model the w-conditioned student's images stop improving long before they reach the
guided teacher's at the same steps (docs/distillation.md), so its default students use "cfg".

Sampling: DDIM with ``timestep_spacing="trailing"``, so the first step starts at t = 999 (pure
noise) and the N-step grid is nested in the 2N-step one; the pipeline's guidance_scale = 1 + w.
The data x0 are the teacher's own guided samples (TeacherData.latents): no training images.
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
    w_conditioned_unet,
    x0_from_eps,
)
from .loop import read_log, train

GUIDANCE_MODES = ("embedded", "cfg")


@dataclass(frozen=True)
class ProgressiveSettings:
    """``step_schedule``: the guided student's DDIM steps (the first teacher), then each round's
    student, each half the one before, e.g. (32, 16, 8, 4)."""

    step_schedule: tuple[int, ...] = (16, 8, 4)
    guidance_iters: int = 200       # stage 1
    round_iters: int = 200          # each halving round
    # DDIM steps of the teacher per student step in every round: 2 = Salimans & Ho (the teacher samples
    # at twice the student's steps); 4 = a teacher at four times, a more exact target for the same
    # student at the cost of two more teacher calls per iteration (no backward pass through them)
    teacher_substeps: int = 2
    batch_size: int = 8
    lr: float = 1e-4
    w_range: tuple[float, float] = (2.0, 14.0)  # w = guidance_scale - 1, sampled uniformly
    # Stage 1's noise levels: "grid" = only those the first round's teacher is evaluated at (its
    # DDIM steps at step_schedule[0]), "uniform" = all T of them (Meng et al.; costlier to cover)
    guidance_timesteps: str = "grid"
    # "embedded": stage 1 distils guidance into a w-conditioned student (Meng et al.); "cfg": the
    # student keeps classifier-free guidance and is distilled on its guided output (SnapFusion)
    guidance: str = "embedded"
    cond_dim: int = GUIDANCE_EMBEDDING_DIM
    seed: int = 0
    ckpt_every: int = 50
    bf16: bool = False
    gradient_checkpointing: bool = False
    max_grad_norm: float | None = 1.0
    progress: bool = True

    def __post_init__(self):
        steps = self.step_schedule
        if len(steps) < 2 or any(b * 2 != a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"step_schedule must halve at every round (e.g. 16, 8, 4), got {list(steps)}")
        if self.guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {list(GUIDANCE_MODES)}, got {self.guidance!r}")
        if self.teacher_substeps < 2:
            raise ValueError(f"teacher_substeps must be at least 2, got {self.teacher_substeps}")
        if self.guidance_timesteps not in ("grid", "uniform"):
            raise ValueError(f"guidance_timesteps must be 'grid' or 'uniform', got {self.guidance_timesteps!r}")


def sampler_config(config) -> dict:
    """The DDIM scheduler config a PD student samples with (its teacher's schedule, trailing spacing)."""
    from diffusers import DDIMScheduler

    return scheduler_config(DDIMScheduler.from_config(config, timestep_spacing="trailing", clip_sample=False))


def step_pairs(config, steps: int, substeps: int = 2) -> torch.Tensor:
    """[steps, substeps + 1] (t, the teacher's intermediate points, t_next) of the DDIM sampler at
    ``steps``: the student's step t -> t_next is what the teacher does in ``substeps`` steps of its
    DDIM grid at ``steps * substeps`` (trailing spacing nests the student's grid in it). t_next = -1
    is the final step (DDIMScheduler's own rule: t_next = t - T // steps)."""
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(sampler_config(config))
    ddim.set_timesteps(steps * substeps)
    fine = ddim.timesteps.long().view(steps, substeps)
    t = fine[:, 0]
    t_next = (t - ddim.config.num_train_timesteps // steps).clamp(min=-1)
    return torch.cat([fine, t_next[:, None]], dim=1)


def one_step_target(z, z_end, alpha, sigma, alpha_end, sigma_end):
    """The x0 with which one DDIM step from z (at alpha, sigma) lands on z_end (Salimans & Ho's
    target): solves alpha_end x + sigma_end (z - alpha x) / sigma = z_end for x."""
    ratio = sigma_end / sigma
    return (z_end - ratio * z) / (alpha_end - ratio * alpha)


def v_space_loss(z, eps_student, x0_target, alpha, sigma) -> torch.Tensor:
    """||v_student - v_target||^2 for an epsilon-predicting student: (x0 error / sigma)^2."""
    x0_student = x0_from_eps(z, eps_student.float(), alpha, sigma)
    return (((x0_student - x0_target) / sigma) ** 2).mean()


def student_eps(unet, z, t, batch, cfg: bool) -> torch.Tensor:
    """The epsilon a step-distilled UNet samples with: its classifier-free-guided output at the
    batch's w (``cfg``), or its w-conditioned output (the guidance weight as input)."""
    if cfg:
        return guided_eps(unet, z, t, batch.cond, batch.uncond, batch.w)
    return unet(z, t, encoder_hidden_states=batch.cond, timestep_cond=batch.w_embedding).sample.float()


def guided_student(teacher, settings):
    """The student the first round trains: w-conditioned (``embedded``) or a plain trainable copy of
    the teacher that keeps classifier-free guidance (``cfg``)."""
    if settings.guidance == "cfg":
        return copy.deepcopy(teacher).requires_grad_(True).float()
    return w_conditioned_unet(teacher, settings.cond_dim)


def guidance_step(student, teacher, timesteps, data, schedule, settings, device):
    """Stage 1: the w-conditioned student matches the teacher's guided epsilon at one of ``timesteps``."""

    def step(iteration, generator):
        batch = draw_batch(data, settings.batch_size, settings.w_range, settings.cond_dim, generator, device)
        t = timesteps[torch.randint(len(timesteps), (settings.batch_size,), generator=generator)].to(device)
        alpha, sigma = schedule.alpha_sigma(t, batch.x0)
        z = alpha * batch.x0 + sigma * batch.noise
        with torch.no_grad():
            eps_target = guided_eps(teacher, z, t, batch.cond, batch.uncond, batch.w)
        x0_target = x0_from_eps(z, eps_target, alpha, sigma)
        eps = student(z, t, encoder_hidden_states=batch.cond, timestep_cond=batch.w_embedding).sample
        return v_space_loss(z, eps, x0_target, alpha, sigma)

    return step


def _halving_step(student, teacher, pairs, data, schedule, settings, device):
    """Stage 2 round: one student DDIM step lands where the teacher's DDIM steps through a row of
    ``pairs`` land (two of them: Salimans & Ho's target, ``one_step_target``)."""

    cfg = settings.guidance == "cfg"

    def step(iteration, generator):
        batch = draw_batch(data, settings.batch_size, settings.w_range, settings.cond_dim, generator, device)
        chosen = pairs[torch.randint(len(pairs), (settings.batch_size,), generator=generator)].to(device)
        points = chosen.unbind(1)  # t, the teacher's intermediate points, t_next
        levels = [schedule.alpha_sigma(p, batch.x0) for p in points]
        (alpha, sigma), (alpha_next, sigma_next) = levels[0], levels[-1]
        t = points[0]
        z = alpha * batch.x0 + sigma * batch.noise
        with torch.no_grad():
            z_mid = z
            for tt, (a, s), (a2, s2) in zip(points, levels, levels[1:], strict=False):
                eps = student_eps(teacher, z_mid, tt, batch, cfg)
                z_mid = ddim_step(x0_from_eps(z_mid, eps, a, s), eps, a2, s2)
            x0_target = one_step_target(z, z_mid, alpha, sigma, alpha_next, sigma_next)
        return v_space_loss(z, student_eps(student, z, t, batch, cfg), x0_target, alpha, sigma)

    return step


def run_phase(name, step_fn, student, settings, ckpt_dir: Path, n_iters: int, desc: str = "pd") -> dict:
    """One training phase of ``student`` (AdamW, linear decay) in ``ckpt_dir/name``; its report entry."""
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=0.0)
    phase_dir = ckpt_dir / name
    result = train(step_fn, {"student": student}, optimizer, n_iters, phase_dir, settings.ckpt_every,
                   settings.seed, phase_dir / "loss.csv", lr_scheduler=linear_decay(optimizer, n_iters),
                   autocast_dtype=torch.bfloat16 if settings.bf16 else None,
                   gradient_checkpointing=settings.gradient_checkpointing,
                   max_grad_norm=settings.max_grad_norm, progress=settings.progress, desc=f"{desc} {name}")
    losses = [row["loss"] for row in read_log(phase_dir / "loss.csv")]
    window = max(1, min(10, len(losses) // 4))
    return {"phase": name, "iterations": n_iters, "log": str(phase_dir / "loss.csv"),
            "loss_start": sum(losses[:window]) / window, "loss_end": sum(losses[-window:]) / window,
            "iterations_per_second": result.iterations_per_second, "seconds": result.seconds,
            "peak_memory_bytes": result.peak_memory_bytes, "resumed_from": result.resumed_from}


def train_guided_pd(pipe, teacher_data, settings: ProgressiveSettings, ckpt_dir) -> tuple:
    """Both stages from the teacher pipeline ``pipe``; returns (final student UNet, its DDIM
    scheduler config, a report: parametrisation and one entry per phase). Each phase checkpoints
    under ``ckpt_dir/<phase>/`` and a rerun resumes where the last run stopped."""
    ckpt_dir = Path(ckpt_dir)
    device = pipe.unet.device
    schedule = NoiseSchedule.of(pipe.scheduler.config)
    teacher = frozen(pipe.unet)
    student = guided_student(teacher, settings)
    phases = []
    if settings.guidance == "embedded":
        if settings.guidance_timesteps == "grid":
            timesteps = step_pairs(pipe.scheduler.config, settings.step_schedule[0])[:, 0]
        else:
            timesteps = torch.arange(schedule.num_train_timesteps)
        step = guidance_step(student, teacher, timesteps, teacher_data, schedule, settings, device)
        phases.append(run_phase("guidance", step, student, settings, ckpt_dir, settings.guidance_iters))
    for teacher_steps, student_steps in zip(settings.step_schedule, settings.step_schedule[1:], strict=False):
        if phases:  # cfg's first round learns from the model itself, under classifier-free guidance
            teacher = frozen(copy.deepcopy(student))
        pairs = step_pairs(pipe.scheduler.config, student_steps, settings.teacher_substeps)
        step = _halving_step(student, teacher, pairs, teacher_data, schedule, settings, device)
        phases.append(run_phase(f"steps-{student_steps}", step, student, settings, ckpt_dir, settings.round_iters))
        phases[-1]["teacher_steps"] = teacher_steps
        del teacher
    method = ("guided progressive distillation" if settings.guidance == "embedded"
              else "CFG-aware progressive distillation")
    report = {"method": method, "parametrisation": "v (epsilon head, v-space loss)", "guidance": settings.guidance,
              "steps": settings.step_schedule[-1], "settings": asdict(settings), "phases": phases}
    return frozen(student), sampler_config(pipe.scheduler.config), report
