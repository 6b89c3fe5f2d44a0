"""The embedded model's brief fitting: deterministic, thread-independent, and it really teaches the
VAE to reconstruct and the UNet to denoise (on photographs the fitting never saw)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sdsqueeze import models, tinyfit
from sdsqueeze.diffc.images import load_image

REPO = Path(__file__).resolve().parents[2]


def fitted(vae_steps, unet_steps, threads=None, report=None):
    previous = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        spec = models.TinySpec(image_size=64, vae_fit_steps=vae_steps, unet_fit_steps=unet_steps)
        return models.build_tiny_pipeline(spec, report)
    finally:
        torch.set_num_threads(previous)


def test_fitting_is_bit_identical_whatever_the_callers_threads():
    report = {}
    a, b = fitted(3, 3, threads=2, report=report), fitted(3, 3, threads=1)
    for name in ("vae", "unet"):
        for (key, wa), wb in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values()):
            assert torch.equal(wa, wb), f"{name}.{key}"
    assert a.vae.config.scaling_factor == b.vae.config.scaling_factor != 0.18215
    assert report["vae"]["steps"] == 3 and report["unet"]["steps"] == 3
    assert not torch.equal(a.unet.conv_in.weight, fitted(0, 0).unet.conv_in.weight)


def held_out_photo(pipe):
    """scikit-image's astronaut (not a fitting photograph) in [-1, 1] at the model's size."""
    assert "astronaut" not in tinyfit.FIT_PHOTOS
    pixels = load_image("astronaut", 64).astype(np.float32) / 127.5 - 1
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


@torch.no_grad()
def reconstruction_mse(pipe, image):
    return (pipe.vae.decode(pipe.vae.encode(image).latent_dist.mean).sample - image).pow(2).mean().item()


def test_fitting_teaches_reconstruction_and_denoising():
    random_pipe, pipe = fitted(0, 0), fitted(200, 150)
    image = held_out_photo(pipe)
    assert reconstruction_mse(pipe, image) < 0.75 * reconstruction_mse(random_pipe, image)

    with torch.no_grad():  # the UNet's x0 estimate at t=300 beats the noisy latent it was given
        clean = pipe.vae.encode(image).latent_dist.mean * pipe.vae.config.scaling_factor
        ids = pipe.tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
        context = pipe.text_encoder(ids)[0]
        t = torch.tensor([300])
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
        noisy = pipe.scheduler.add_noise(clean, noise, t)
        alpha = pipe.scheduler.alphas_cumprod[300]
        estimate = (noisy - (1 - alpha).sqrt() * pipe.unet(noisy, t, context).sample) / alpha.sqrt()
    assert (estimate - clean).pow(2).mean() < 0.5 * (noisy / alpha.sqrt() - clean).pow(2).mean()


def test_schema_defaults_are_the_embedded_fit():
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    model = schema["properties"]["model"]["properties"]
    assert {"vae_fit_steps": model["tiny_vae_fit_steps"]["default"],
            "unet_fit_steps": model["tiny_unet_fit_steps"]["default"]} == models.EMBEDDED_FIT


@pytest.mark.parametrize("photo", tinyfit.FIT_PHOTOS)
def test_fitting_photographs_ship_with_scikit_image(photo):
    from skimage import data

    assert np.asarray(getattr(data, photo)()).size > 0
