"""Seeds and initial noise: one seed per (prompt, sample), noise always drawn on the CPU.

Drawing on the CPU means a CPU run and a GPU run of the same variant start from bit-identical
latents, so differences between them are the model's, not the random number generator's.
"""

from __future__ import annotations

import hashlib

SEED_SPACE = 2**31 - 1


def prompt_seed(global_seed: int, prompt_id: int) -> int:
    """A fixed, well-spread seed for one prompt, derived from the global seed."""
    digest = hashlib.sha256(f"sdsqueeze:{global_seed}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_SPACE


def sample_seed(base_seed: int, sample: int) -> int:
    """Seed of the sample-th image of a prompt (sample 0 uses the prompt's own seed)."""
    return (base_seed + sample) % SEED_SPACE


def sampler_seed(image_seed: int) -> int:
    """Seed of the noise a stochastic sampler adds during sampling (LCM's re-noising): derived from
    the image's seed but not equal to it, so it never repeats the initial latent's draw."""
    return prompt_seed(image_seed, -1)


def sampler_generators(image_seeds: list[int]):
    """One CPU generator per image for the sampler's own noise (deterministic samplers draw none)."""
    import torch

    return [torch.Generator("cpu").manual_seed(sampler_seed(int(s))) for s in image_seeds]


def initial_latents(seeds: list[int], shape: tuple[int, ...]):
    """Standard-normal latents, one independent draw per seed, stacked on dim 0 (float32, CPU)."""
    import torch

    draws = [
        torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s)), dtype=torch.float32)
        for s in seeds
    ]
    return torch.stack(draws)


def latent_shape(pipe, height: int, width: int) -> tuple[int, int, int]:
    """(channels, h, w) of one latent for any diffusers pipeline the workflow samples."""
    # `is None`, not `or`: a torch.compile'd module refuses truth tests (OptimizedModule has no len()).
    denoiser = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
    from .uncond import is_unconditional, sample_shape

    if is_unconditional(pipe):  # the UNet's own sample size
        return sample_shape(pipe)
    channels = denoiser.config.in_channels
    factor = pipe.vae_scale_factor
    return (channels, height // factor, width // factor)
