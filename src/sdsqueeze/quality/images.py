"""A variant's images and their reference: manifests, pairing by prompt/sample/seed, PSNR and
SSIM (scikit-image; SSIM on RGB with its default 7x7 window), and the timing the manifests hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import intermediates

KEYS = ["prompt_id", "sample"]


def images_tensor(paths: list[str | Path]):
    """N x 3 x H x W float in [0, 1] (as torchvision's ToTensor gives pytorch-fid and LPIPS)."""
    import torch

    arrays = np.stack([load_rgb(p) for p in paths]).astype(np.float32) / 255.0
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


def load_rgb(path: str | Path) -> np.ndarray:
    """8-bit RGB pixels; a missing or damaged file stops with one line naming it."""
    return intermediates.load_image(path, "RGB")


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    """PSNR in dB on 8-bit RGB; +inf for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(reference, image):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, image, data_range=255))


def ssim(reference: np.ndarray, image: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(reference, image, channel_axis=2, data_range=255))


def read_manifests(shard_dirs: list[str | Path], prompts: pd.DataFrame | None = None) -> pd.DataFrame:
    """All manifests of some shards with each image's path, checked against the files on disk
    (sha256) and, given the prompt set, for a complete set of images."""
    return intermediates.read_manifests(shard_dirs, prompts)


def paired_images(variant_dirs, reference_dirs, prompts: pd.DataFrame | None = None) -> pd.DataFrame:
    variant = read_manifests(variant_dirs, prompts)
    reference = read_manifests(reference_dirs, prompts)[KEYS + ["path", "seed"]]
    pairs = variant.merge(reference, on=KEYS, suffixes=("", "_ref"), validate="one_to_one")
    if len(pairs) != len(variant) or (pairs.seed != pairs.seed_ref).any():
        raise ValueError("variant and reference images do not pair up by prompt, sample and seed")
    return pairs


def per_image_quality(variant_dirs, reference_dirs, prompts: pd.DataFrame | None = None) -> pd.DataFrame:
    """PSNR/SSIM of every image of a variant against the reference image of the same seed."""
    pairs = paired_images(variant_dirs, reference_dirs, prompts)
    rows = []
    for pair in pairs.itertuples():
        ref, img = load_rgb(pair.path_ref), load_rgb(pair.path)
        rows.append({"prompt_id": pair.prompt_id, "sample": pair.sample, "seed": pair.seed,
                     "variant": pair.variant, "file": pair.file,
                     "psnr": psnr(ref, img), "ssim": ssim(ref, img)})
    return pd.DataFrame(rows)


def timing_table(manifests: pd.DataFrame) -> pd.DataFrame:
    """Per variant: wall and process CPU seconds per image (median over timed batches, each
    batch one repeat), their spread over repeats, the excluded warm-up, the UNet's ms per call
    (median over batches of each batch's median), and peak memory."""
    frame = manifests.copy()
    for column in ("cpu_seconds", "batch_index", "warmup_seconds", "unet_ms_step"):
        if column not in frame:  # shards written before these were recorded
            frame[column] = 0 if column == "batch_index" else np.nan
    frame["shard"] = frame.path.map(lambda p: str(Path(p).parent)) if "path" in frame else 0
    batches = frame.groupby(["variant", "shard", "batch_index"], sort=True).agg(
        wall=("seconds", "first"), cpu=("cpu_seconds", "first"), warmup=("warmup_seconds", "first"),
        unet_ms=("unet_ms_step", "first"))
    grouped = frame.groupby("variant", sort=True)
    per_batch = batches.groupby("variant")
    return pd.DataFrame({
        "images": grouped.size(),
        "batches": per_batch.size(),
        "seconds_per_image_median": per_batch.wall.median(),
        "seconds_per_image_mean": grouped.seconds.mean(),
        "seconds_spread": per_batch.wall.agg(relative_spread),
        "cpu_seconds_per_image_median": per_batch.cpu.median(),
        "cpu_seconds_spread": per_batch.cpu.agg(relative_spread),
        "warmup_seconds": per_batch.warmup.max(),
        "unet_ms_step_median": per_batch.unet_ms.median(),
        "peak_memory_mb": grouped.peak_memory_mb.max(),
        "memory_kind": grouped.memory_kind.first(),
    }).reset_index()


def relative_spread(values: pd.Series) -> float:
    """(max − min) / median over repeats: how far one repeat can sit from another. One repeat
    has no spread to show (NaN), rather than a false zero."""
    values = values.dropna()
    if len(values) < 2:
        return float("nan")
    return float((values.max() - values.min()) / values.median())
