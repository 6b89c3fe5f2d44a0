"""Seeded stand-ins for the metrics' pretrained networks, saved where the real loaders look,
plus small synthetic image shards in the generator's layout (manifest.csv + PNGs)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import torch
from PIL import Image

from sdsqueeze.intermediates import sha256_file
from sdsqueeze.quality.weights import ALEXNET, FID_INCEPTION

TINY_CLIP = "sdsq-tiny-clip"
TINY_CLIP_TAG = "seeded"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def random_fid_inception_state(seed: int = 0) -> dict:
    """pytorch-fid's FID Inception architecture with seeded random weights."""
    from pytorch_fid import inception as pf

    torch.manual_seed(seed)
    built = []

    def spy(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    real = pf._inception_v3
    # fid_inception_v3 builds, patches blocks, then loads by URL: hand it the model's own weights.
    with mock.patch.object(pf, "_inception_v3", spy), \
         mock.patch.object(pf, "load_state_dict_from_url", lambda *a, **k: built[-1].state_dict()):
        net = pf.fid_inception_v3()
    # Random weights drive activations to ~0 through 90 layers; let batch norm measure them on
    # seeded noise (train-mode forward) so the stand-in's features vary from image to image.
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        net(torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(seed)) * 2 - 1)
    return net.state_dict()


def register_tiny_clip(tmp: Path) -> None:
    import open_clip

    config_path = tmp / f"{TINY_CLIP}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config_path)


def write_weights(weights_dir: Path, seed: int = 0) -> Path:
    """All three checkpoints, seeded, under the names the loaders resolve."""
    import open_clip
    import torchvision

    weights_dir.mkdir(parents=True, exist_ok=True)
    torch.save(random_fid_inception_state(seed), weights_dir / FID_INCEPTION.filename)
    torch.manual_seed(seed)
    torch.save(torchvision.models.alexnet().state_dict(), weights_dir / ALEXNET.filename)
    register_tiny_clip(weights_dir)
    torch.manual_seed(seed)
    clip = open_clip.create_model(TINY_CLIP)
    (weights_dir / "open_clip").mkdir(exist_ok=True)
    torch.save(clip.state_dict(), weights_dir / "open_clip" / f"{TINY_CLIP}-{TINY_CLIP_TAG}.pt")
    return weights_dir


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """n seeded RGB uint8 images with structure at several scales (upsampled noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, size // 8, size // 8, 3))
    fine = rng.random((n, size, size, 3))
    up = coarse.repeat(8, axis=1).repeat(8, axis=2)
    return (255 * (0.8 * up + 0.2 * fine)).clip(0, 255).astype(np.uint8)


def write_shard(shard: Path, variant: str, images: np.ndarray, prompt_ids, seeds) -> Path:
    shard.mkdir(parents=True, exist_ok=True)
    rows = []
    for image, prompt_id, seed in zip(images, prompt_ids, seeds):
        name = f"p{prompt_id:05d}_s0.png"
        Image.fromarray(image).save(shard / name)
        rows.append({"prompt_id": prompt_id, "sample": 0, "seed": seed, "variant": variant,
                     "file": name, "seconds": 0.1, "peak_memory_mb": 100.0, "memory_kind": "cpu_rss",
                     "sha256": sha256_file(shard / name)})
    pd.DataFrame(rows).to_csv(shard / "manifest.csv", index=False)
    return shard


def make_variants(root: Path, n: int = 6, size: int = 64) -> tuple[dict[str, list[Path]], pd.DataFrame]:
    """Reference, an identical copy, and a noisy variant; plus the prompts table."""
    prompt_ids = list(range(1, n + 1))
    seeds = [1000 + p for p in prompt_ids]
    reference = smooth_images(n, size, seed=1)
    noisy = np.clip(reference.astype(int) + np.random.default_rng(2).integers(-60, 60, reference.shape), 0, 255)
    dirs = {
        "ref": [write_shard(root / "ref" / "shard-0", "ref", reference, prompt_ids, seeds)],
        "copy": [write_shard(root / "copy" / "shard-0", "copy", reference, prompt_ids, seeds)],
        "noisy": [write_shard(root / "noisy" / "shard-0", "noisy", noisy.astype(np.uint8), prompt_ids, seeds)],
    }
    prompts = pd.DataFrame({"prompt_id": prompt_ids, "image_id": [5000 + p for p in prompt_ids],
                            "prompt": [f"a photo of object number {p}" for p in prompt_ids],
                            "seed": seeds})
    return dirs, prompts
