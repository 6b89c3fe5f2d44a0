"""Unconditional latent diffusion: the embedded LDM, and sampling any diffusers unconditional pipeline.

The embedded unconditional model (``model.source: tiny-uncond``) is the embedded autoencoder (the
text-to-image model's VAE, built and fitted from the same seed, so bit-identical to it) under its own
small ``UNet2DModel``, fitted as a denoiser of that autoencoder's latents of the project's own
photographs (sdsqueeze.tinyfit's pool). It is written with ``save_pretrained`` as an ``LDMPipeline``
and read back with ``DiffusionPipeline.from_pretrained``, the path a CompVis LDM in diffusers'
layout takes (docs/unconditional.md).

Sampling: diffusers' ``LDMPipeline``, ``DDPMPipeline`` and ``DDIMPipeline`` draw their initial noise
from the generators they are given (one per image, seeded by the sample list), so an image does not
depend on its batch. DDPM's and DDIM's pipelines hand the same generators to the scheduler's step
for the noise it adds (DDIM at eta > 0); LDMPipeline hands none, so the step is given them here.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass

UNCOND_UNET_CHANNELS = (32, 64, 64)
# Linear betas of CompVis' LDM-4/LDM-8 LSUN models (their configs' linear_start/linear_end).
LDM_SCHEDULER = dict(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", num_train_timesteps=1000,
                     clip_sample=False, set_alpha_to_one=False, steps_offset=0)


@dataclass(frozen=True)
class UncondSpec:
    seed: int = 0
    image_size: int = 64
    vae_fit_steps: int = 0
    unet_fit_steps: int = 0
    unet_lr: float = 1e-3
    unet_batch: int = 16
    latent_pool: int = 256


def build_unet(latent_size: int):
    """A small UNet2DModel over 4-channel latents: two resolutions, self-attention at the lower one."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=UNCOND_UNET_CHANNELS,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=16, attention_head_dim=8,
    )


def fit_unet(unet, scheduler, latents, spec: UncondSpec, generator) -> dict:
    """Epsilon prediction on the scaled latents (LDM's objective), no conditioning."""
    import numpy as np
    import torch

    from .tinyfit import _train

    def batch_loss():
        clean = latents[torch.randint(len(latents), (spec.unet_batch,), generator=generator)]
        timesteps = torch.randint(scheduler.config.num_train_timesteps, (spec.unet_batch,), generator=generator)
        noise = torch.randn(clean.shape, generator=generator)
        return (unet(scheduler.add_noise(clean, noise, timesteps), timesteps).sample - noise).pow(2).mean()

    losses = _train(unet, spec.unet_lr, spec.unet_fit_steps, batch_loss) if spec.unet_fit_steps else [np.nan]
    return {"steps": spec.unet_fit_steps, "final_eps_mse": float(np.mean(losses[-50:]))}


def build_tiny_uncond_pipeline(spec: UncondSpec = UncondSpec(), fit_report: dict | None = None):
    """The embedded LDM in memory: the embedded autoencoder (built and fitted exactly as the
    text-to-image model's) and a UNet2DModel fitted on its latents, in an LDMPipeline."""
    import torch
    from diffusers import DDIMScheduler, LDMPipeline

    from . import tinyfit
    from .models import TinySpec, build_sd_components

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the weights never depend on the caller's thread count
    try:
        began = time.perf_counter()
        tiny = TinySpec(seed=spec.seed, image_size=spec.image_size)
        torch.manual_seed(spec.seed)
        _, vae, _ = build_sd_components(tiny.architecture(), spec.image_size)  # the text-to-image model's draws
        settings = tinyfit.FitSettings(vae_steps=spec.vae_fit_steps, seed=spec.seed, unet_crop=spec.image_size,
                                       latent_pool=spec.latent_pool)
        generator = torch.Generator().manual_seed(spec.seed)
        pool = tinyfit.photo_pool()
        report: dict = {"photos": list(tinyfit.FIT_PHOTOS), "settings": asdict(spec)}
        if spec.vae_fit_steps:
            report["vae"] = tinyfit.fit_vae(vae, pool, settings, generator)
        latents = tinyfit.encode_pool(vae, pool, settings, generator)
        scaling = float(1.0 / latents.std())
        vae.register_to_config(scaling_factor=scaling)
        report["vae_scaling_factor"] = scaling
        unet = build_unet(spec.image_size // 8)
        scheduler = DDIMScheduler(**LDM_SCHEDULER)
        report["unet"] = fit_unet(unet, scheduler, latents * scaling, spec, generator)
        for module in (vae, unet):
            module.requires_grad_(False).eval()
        report["seconds"] = round(time.perf_counter() - began, 1)
    finally:
        torch.set_num_threads(threads)
    if fit_report is not None:
        fit_report.update(report)
    # LDMPipeline's vqvae slot: it calls only decode(latents / scaling_factor).sample, which
    # AutoencoderKL provides as VQModel does (CompVis' LDM-4 uses a KL autoencoder too).
    return LDMPipeline(vqvae=vae, unet=unet, scheduler=scheduler)


def save_tiny_uncond_pipeline(out_dir, spec: UncondSpec = UncondSpec(), fit_report: dict | None = None):
    from pathlib import Path

    out_dir = Path(out_dir)
    build_tiny_uncond_pipeline(spec, fit_report).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


# --- sampling ---------------------------------------------------------------------------------------

def is_unconditional(pipe) -> bool:
    from .models import UNCONDITIONAL_PIPELINES

    return type(pipe).__name__ in UNCONDITIONAL_PIPELINES


def native_size(pipe) -> int:
    """The pixel size an unconditional pipeline samples at (its UNet's sample_size, times the
    autoencoder's downsampling for a latent model)."""
    size = int(pipe.unet.config.sample_size if isinstance(pipe.unet.config.sample_size, int)
               else pipe.unet.config.sample_size[0])
    autoencoder = getattr(pipe, "vqvae", None)
    return size * (2 ** (len(autoencoder.config.block_out_channels) - 1) if autoencoder is not None else 1)


def check_size(pipe, spec: dict) -> None:
    """An unconditional pipeline samples at its own size: a variant asking for another is refused."""
    if not is_unconditional(pipe):
        return
    size = native_size(pipe)
    if (int(spec["height"]), int(spec["width"])) != (size, size):
        raise ValueError(f"variant '{spec['name']}' asks for {spec['height']}x{spec['width']} px, but this "
                         f"unconditional {type(pipe).__name__} samples at its own {size}x{size} px; set "
                         f"generation.height and generation.width to {size}")


def sample_shape(pipe) -> tuple[int, int, int]:
    """(channels, h, w) the UNet denoises."""
    size = pipe.unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else size
    return (pipe.unet.config.in_channels, h, w)


def generators(seeds: list[int]):
    """One CPU generator per image: its initial noise is ``seeding.initial_latents``' draw for the seed."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


class FinalSample:
    """Wraps a pipeline's ``scheduler.step`` (on this pipeline instance only) to keep the last
    prev_sample (the final latents the image is decoded from) and to pass the images' generators
    to a step that takes them but is called without (LDMPipeline's eta noise). By hand because
    diffusers' unconditional pipelines take no ``callback_on_step_end`` and return only images."""

    def __init__(self, scheduler, image_generators):
        self.scheduler, self.step = scheduler, scheduler.step
        self.takes_generator = "generator" in inspect.signature(self.step).parameters
        self.generators = image_generators
        self.latents = None

    def __enter__(self):
        def step(*args, **kwargs):
            if self.takes_generator and kwargs.get("generator") is None:
                kwargs["generator"] = self.generators
            out = self.step(*args, **kwargs)
            self.latents = (out.prev_sample if hasattr(out, "prev_sample") else out[0])
            return out

        self.scheduler.step = step
        return self

    def __exit__(self, *exc):
        del self.scheduler.step  # back to the class's method
        return False


def run_unconditional(pipe, spec: dict, seeds: list[int], output_type: str = "pil"):
    """One call of an unconditional pipeline at the variant's steps (and eta); returns (images,
    final latents on CPU)."""
    image_generators = generators(seeds)
    arguments = {"batch_size": len(seeds), "generator": image_generators,
                 "num_inference_steps": int(spec["steps"]), "output_type": output_type}
    if "eta" in inspect.signature(pipe.__call__).parameters:
        arguments["eta"] = float(spec.get("eta", 0.0))
    with FinalSample(pipe.scheduler, image_generators) as final:
        out = pipe(**arguments)
    return out.images, final.latents.detach().float().cpu()
