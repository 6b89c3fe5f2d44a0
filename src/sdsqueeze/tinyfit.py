"""Two minutes of seeded CPU fitting for the embedded model: its VAE learns to reconstruct and its UNet
to denoise, on scikit-image's photographs.

Why: with random weights the VAE decoder ignores its latent and the UNet's noise prediction is
noise, so nothing that depends on image content can be shown on the embedded default (DiffC's
rate-distortion curve was flat at the random decoder's 10 dB). Fitted briefly, the VAE reconstructs
(12.6-15.5 dB at 128 px on photographs it never saw) and the UNet's x0 estimate is closer to the
clean latent than the noisy latent it is given (tests/unit/test_tinyfit.py), which is all the offline
pipeline needs; real studies load real weights.

The loops are written here because no installed library trains a diffusers VAE/UNet from in-memory
crops: diffusers' training scripts are command-line examples that need accelerate and datasets.
Every random draw comes from one seeded generator and the fitting runs on one torch thread, so a
build is bit-identical on a given machine whatever the caller's thread count.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

# Disjoint from DiffC's default test images (astronaut, coffee, chelsea, rocket): the rate-distortion
# curves measure photographs the model never saw. Grey images get colour from the random mix below.
FIT_PHOTOS = ("camera", "brick", "grass", "gravel", "moon", "coins", "clock", "page", "text", "cell",
              "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel")
POOL_SIDE = 400  # large photographs are shrunk to this short side, so crops hold structure, not pixels


@dataclass(frozen=True)
class FitSettings:
    vae_steps: int = 0
    unet_steps: int = 0
    seed: int = 0
    vae_crop: int = 32   # small crops train the VAE fastest per CPU second (measured: 32 beat 64/128)
    vae_batch: int = 16
    vae_lr: float = 2e-3
    # Extra N(0, 0.5^2) on the sampled latent (std ~2.5) while fitting: the decoder learns to tolerate
    # small latent errors. Without it (measured), DiffC's PSNR fell at the highest rates, where a
    # one-step DDIM leaves fine latent noise that the decoder amplified; with it the curve rises at 64
    # and 128 px and the VAE's own PSNR improves (13.0 -> 13.8 dB at 128 px).
    vae_latent_noise: float = 0.5
    unet_crop: int = 64  # 8x8 latents; the fitted UNet denoises 16x16 latents as well
    unet_batch: int = 16
    unet_lr: float = 1e-3
    latent_pool: int = 256  # crops encoded once; the UNet draws its batches from them


def photo_pool() -> list[torch.Tensor]:
    """The fitting photographs as 3xHxW tensors in [0, 1]."""
    from skimage import data as skdata
    from skimage.color import gray2rgb
    from skimage.transform import resize

    pool = []
    for name in FIT_PHOTOS:
        image = np.asarray(getattr(skdata, name)())
        image = gray2rgb(image) if image.ndim == 2 else image[..., :3]
        image = image.astype(np.float32) / 255.0
        short = min(image.shape[:2])
        if short > POOL_SIDE:
            shape = (image.shape[0] * POOL_SIDE // short, image.shape[1] * POOL_SIDE // short)
            image = resize(image, shape, anti_aliasing=True).astype(np.float32)
        pool.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
    return pool


def random_crops(pool, n: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """n crops in the VAE's [-1, 1] range, each with a random colour mix (hue variety from grey
    photographs), stretched to the full range."""
    crops = []
    for _ in range(n):
        image = pool[int(torch.randint(len(pool), (1,), generator=generator))]
        top = int(torch.randint(image.shape[1] - side + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[2] - side + 1, (1,), generator=generator))
        crop = image[:, top : top + side, left : left + side]
        mix = torch.eye(3) + 0.6 * torch.randn(3, 3, generator=generator)
        crop = torch.einsum("ij,jhw->ihw", mix, crop)
        crop = (crop - crop.amin()) / (crop.amax() - crop.amin() + 1e-6)
        crops.append(crop * 2 - 1)
    return torch.stack(crops)


def zero_residual_branches(vae) -> None:
    """Each ResNet block and attention starts as the identity, so the untrained VAE is a shallow
    conv stack that learns in hundreds of steps instead of thousands (SkipInit / Fixup)."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D

    for module in vae.modules():
        if isinstance(module, ResnetBlock2D):
            torch.nn.init.zeros_(module.conv2.weight)
            torch.nn.init.zeros_(module.conv2.bias)
        elif isinstance(module, Attention):
            torch.nn.init.zeros_(module.to_out[0].weight)
            torch.nn.init.zeros_(module.to_out[0].bias)


def _train(module, lr: float, steps: int, batch_loss) -> list[float]:
    """Adam under a one-cycle schedule for ``steps`` steps of ``batch_loss()`` (which draws its own
    batch); the module is left in eval mode. Returns the losses."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    module.train()
    losses = []
    for _ in range(steps):
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    module.eval()
    return losses


def fit_vae(vae, pool, settings: FitSettings, generator: torch.Generator) -> dict:
    """Reconstruction MSE plus SD's tiny KL weight, on sampled latents."""
    zero_residual_branches(vae)

    def batch_loss():
        pixels = random_crops(pool, settings.vae_batch, settings.vae_crop, generator)
        posterior = vae.encode(pixels).latent_dist
        latent = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        if settings.vae_latent_noise:
            latent = latent + settings.vae_latent_noise * torch.randn(latent.shape, generator=generator)
        return (vae.decode(latent).sample - pixels).pow(2).mean() + 1e-6 * posterior.kl().mean()

    losses = _train(vae, settings.vae_lr, settings.vae_steps, batch_loss)
    return {"steps": settings.vae_steps, "final_mse": float(np.mean(losses[-50:]))}


@torch.no_grad()
def encode_pool(vae, pool, settings: FitSettings, generator: torch.Generator) -> torch.Tensor:
    pixels = random_crops(pool, settings.latent_pool, settings.unet_crop, generator)
    return torch.cat([vae.encode(batch).latent_dist.mean for batch in pixels.split(32)])


def fit_unet(pipe, latents: torch.Tensor, settings: FitSettings, generator: torch.Generator) -> dict:
    """Epsilon prediction (SD's objective) on scaled latents, conditioned on the empty prompt."""
    unet, scheduler = pipe.unet, pipe.scheduler
    with torch.no_grad():
        ids = pipe.tokenizer([""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             return_tensors="pt").input_ids
        context = pipe.text_encoder(ids)[0].expand(settings.unet_batch, -1, -1)

    def batch_loss():
        clean = latents[torch.randint(len(latents), (settings.unet_batch,), generator=generator)]
        timesteps = torch.randint(scheduler.config.num_train_timesteps, (settings.unet_batch,), generator=generator)
        noise = torch.randn(clean.shape, generator=generator)
        predicted = unet(scheduler.add_noise(clean, noise, timesteps), timesteps, context).sample
        return (predicted - noise).pow(2).mean()

    losses = _train(unet, settings.unet_lr, settings.unet_steps, batch_loss)
    return {"steps": settings.unet_steps, "final_eps_mse": float(np.mean(losses[-50:]))}


def fit_tiny_pipeline(pipe, settings: FitSettings) -> dict:
    """Fit the VAE, set its scaling factor the way SD's was set (1 / std of the latents), then fit
    the UNet on those scaled latents. Returns what was done, for the model's provenance."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the weights then never depend on the caller's thread count
    try:
        return _fit(pipe, settings)
    finally:
        torch.set_num_threads(threads)


def _fit(pipe, settings: FitSettings) -> dict:
    began = time.perf_counter()
    generator = torch.Generator().manual_seed(settings.seed)
    pool = photo_pool()
    report: dict = {"photos": list(FIT_PHOTOS), "settings": asdict(settings)}
    if settings.vae_steps:
        report["vae"] = fit_vae(pipe.vae, pool, settings, generator)
    latents = encode_pool(pipe.vae, pool, settings, generator)
    scaling = float(1.0 / latents.std())
    pipe.vae.register_to_config(scaling_factor=scaling)
    report["vae_scaling_factor"] = scaling
    if settings.unet_steps:
        report["unet"] = fit_unet(pipe, latents * scaling, settings, generator)
    for module in (pipe.vae, pipe.unet, pipe.text_encoder):
        module.requires_grad_(False)
    report["seconds"] = round(time.perf_counter() - began, 1)
    return report
