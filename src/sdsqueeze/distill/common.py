"""What the step-distillation trainers share: the w-conditioned student, the guidance embedding, the
noise schedule's alphas, the teacher's classifier-free guidance, and batches of teacher data.

A w-conditioned student is diffusers' own ``UNet2DConditionModel`` with ``time_cond_proj_dim`` set:
the guidance weight's sinusoidal embedding, projected, is added to the time embedding (the
"w-condition" of Meng et al., and LCM's). ``StableDiffusionPipeline`` recognises such a UNet: it then
skips classifier-free guidance and passes ``guidance_scale - 1`` as w, so a student saved with
``save_pretrained`` samples through the stock pipeline (w = guidance - 1 throughout, the Imagen
convention that diffusers uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GUIDANCE_EMBEDDING_DIM = 256  # LCM's choice for SD 1.5 (its training script's time_cond_proj_dim)


def guidance_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """The embedding ``StableDiffusionPipeline`` gives a w-conditioned UNet at sampling time: the
    pipeline's own function is called, so training and sampling cannot drift apart."""
    from diffusers import StableDiffusionPipeline

    # get_guidance_scale_embedding does not use its instance; calling it unbound avoids building a pipeline
    return StableDiffusionPipeline.get_guidance_scale_embedding(None, w.float().cpu(), embedding_dim=dim)


def w_conditioned_unet(unet, cond_dim: int = GUIDANCE_EMBEDDING_DIM):
    """A copy of ``unet`` with a guidance input (``time_cond_proj_dim``); its projection starts at
    zero, so the student starts as the teacher's conditional branch. A UNet that already has the
    input (a student's student) is copied as it is."""
    from diffusers import UNet2DConditionModel

    if unet.config.time_cond_proj_dim is not None:
        with torch.device(unet.device):  # initialised where it trains: SD 1.5's init is slow on a CPU
            student = UNet2DConditionModel.from_config(unet.config)
        student.load_state_dict(unet.state_dict())
        return _trainable_copy(student, unet.device)
    with torch.device(unet.device):
        student = UNet2DConditionModel.from_config(unet.config, time_cond_proj_dim=cond_dim)
    missing, unexpected = student.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any(not name.endswith("cond_proj.weight") for name in missing):
        raise RuntimeError(f"teacher and student UNets do not match: missing {missing}, unexpected {unexpected}")
    torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return _trainable_copy(student, unet.device)


def _trainable_copy(student, device):
    """float32 weights on ``device`` (mixed precision comes from autocast, not from the weights)."""
    if student.dtype != torch.float32:
        student = student.float()
    return student.to(device)


def scheduler_config(scheduler) -> dict:
    """A scheduler's config with its class name, as its scheduler_config.json would hold it."""
    return {"_class_name": type(scheduler).__name__, **dict(scheduler.config)}


def frozen(module):
    """``module`` in eval mode with no gradients (a teacher or a target network)."""
    module.requires_grad_(False)
    return module.eval()


def _as_tensor(alphas_cumprod) -> torch.Tensor:
    return torch.as_tensor(alphas_cumprod, dtype=torch.float64)


@dataclass
class NoiseSchedule:
    """The teacher's discrete schedule: alpha_t = sqrt(alphas_cumprod[t]), sigma_t = sqrt(1 - ...);
    timestep -1 means DDIM's final step (``final_alpha_cumprod``, as diffusers' DDIMScheduler)."""

    alphas_cumprod: torch.Tensor
    final_alpha_cumprod: float

    @classmethod
    def of(cls, scheduler_config) -> NoiseSchedule:
        from diffusers import DDIMScheduler

        ddim = DDIMScheduler.from_config(scheduler_config)
        return cls(_as_tensor(ddim.alphas_cumprod), float(ddim.final_alpha_cumprod))

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def alpha_sigma(self, timesteps: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_t and sigma_t shaped to broadcast against ``like`` (float32, its device)."""
        table = torch.cat([self.alphas_cumprod, torch.tensor([self.final_alpha_cumprod], dtype=torch.float64)])
        index = torch.where(timesteps < 0, len(self.alphas_cumprod), timesteps).cpu()
        cumprod = table[index].to(like.device, torch.float32).view(-1, *([1] * (like.ndim - 1)))
        return cumprod.sqrt(), (1 - cumprod).sqrt()


def x0_from_eps(z, eps, alpha, sigma):
    return (z - sigma * eps) / alpha


def ddim_step(x0, eps, alpha_next, sigma_next):
    """Deterministic DDIM (eta = 0) to the next noise level, from an x0 and an epsilon estimate."""
    return alpha_next * x0 + sigma_next * eps


def guided_eps(unet, z, t, cond, uncond, w):
    """Classifier-free guidance of an epsilon-predicting teacher, in one batched call:
    eps_c + w (eps_c - eps_u), i.e. diffusers' guidance_scale = 1 + w."""
    out = unet(torch.cat([z, z]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, cond])).sample
    eps_u, eps_c = out.float().chunk(2)
    return eps_c + w.view(-1, *([1] * (z.ndim - 1))) * (eps_c - eps_u)


@dataclass
class Batch:
    cond: torch.Tensor     # [B, 77, D] prompt embeddings
    uncond: torch.Tensor   # [B, 77, D] the empty prompt's
    x0: torch.Tensor       # [B, C, h, w] teacher latents (the "data")
    noise: torch.Tensor    # [B, C, h, w] fresh noise
    w: torch.Tensor        # [B] guidance weights
    w_embedding: torch.Tensor


def draw_batch(teacher_data, batch_size: int, w_range: tuple[float, float], cond_dim: int,
               generator: torch.Generator, device) -> Batch:
    """One training batch: examples, fresh noise and guidance weights from ``generator`` (CPU), so
    a run is the same on any device."""
    index = torch.randint(len(teacher_data), (batch_size,), generator=generator)
    x0 = teacher_data.latents[index].float()
    noise = torch.randn(x0.shape, generator=generator)
    w = w_range[0] + (w_range[1] - w_range[0]) * torch.rand(batch_size, generator=generator)
    uncond = teacher_data.negative_prompt_embeds.float().expand(batch_size, -1, -1)
    return Batch(cond=teacher_data.prompt_embeds[index].float().to(device), uncond=uncond.to(device),
                 x0=x0.to(device), noise=noise.to(device), w=w.to(device),
                 w_embedding=guidance_embedding(w, cond_dim).to(device))


def loss_summary(losses: list[float], window: int = 10) -> dict:
    """Mean loss over the first and the last ``window`` iterations (single iterations are noisy)."""
    window = max(1, min(window, len(losses) // 2 or 1))
    return {"loss_start": float(sum(losses[:window]) / window), "loss_end": float(sum(losses[-window:]) / window)}


def linear_decay(optimizer, n_iters: int):
    """Learning rate falling linearly to zero over ``n_iters``: with the few hundred iterations of
    a CPU run, the last weights are then not one noisy step away from a good point (measured on the
    embedded model: without it the guided student's 8-step PSNR swung by 2 dB between checkpoints)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: max(0.0, 1.0 - done / max(n_iters, 1)))
