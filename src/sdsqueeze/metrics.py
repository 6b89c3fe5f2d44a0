"""Image-quality metrics against the reference variant, and their statistics.

PSNR and SSIM come from scikit-image (SSIM on RGB with its default 7x7 window); intervals are
percentile bootstraps over images from scipy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

KEYS = ["prompt_id", "sample"]


def load_rgb(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    """PSNR in dB on 8-bit RGB; +inf for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(reference, image):
        return float("inf")
    return float(peak_signal_noise_ratio(reference, image, data_range=255))


def ssim(reference: np.ndarray, image: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(reference, image, channel_axis=2, data_range=255))


def read_manifests(shard_dirs: list[str | Path]) -> pd.DataFrame:
    """All manifests of a variant, with each image's absolute path."""
    frames = []
    for shard in map(Path, shard_dirs):
        manifest = pd.read_csv(shard / "manifest.csv")
        manifest["path"] = [str(shard / f) for f in manifest.file]
        frames.append(manifest)
    return pd.concat(frames, ignore_index=True)


def paired_images(variant_dirs, reference_dirs) -> pd.DataFrame:
    variant = read_manifests(variant_dirs)
    reference = read_manifests(reference_dirs)[KEYS + ["path", "seed"]]
    pairs = variant.merge(reference, on=KEYS, suffixes=("", "_ref"), validate="one_to_one")
    if len(pairs) != len(variant) or (pairs.seed != pairs.seed_ref).any():
        raise ValueError("variant and reference images do not pair up by prompt, sample and seed")
    return pairs


def per_image_quality(variant_dirs, reference_dirs) -> pd.DataFrame:
    """PSNR/SSIM of every image of a variant against the reference image of the same seed."""
    pairs = paired_images(variant_dirs, reference_dirs)
    rows = []
    for pair in pairs.itertuples():
        ref, img = load_rgb(pair.path_ref), load_rgb(pair.path)
        rows.append({"prompt_id": pair.prompt_id, "sample": pair.sample, "seed": pair.seed,
                     "variant": pair.variant, "file": pair.file,
                     "psnr": psnr(ref, img), "ssim": ssim(ref, img)})
    return pd.DataFrame(rows)


def bootstrap_mean(values, confidence: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean.

    Constant samples (e.g. a variant identical to the reference) get a zero-width interval;
    infinite values (identical images' PSNR) make the mean infinite, stated as such.
    """
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if not np.isfinite(mean) or np.all(values == values[0]) or len(values) < 2:
        return mean, mean, mean
    result = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples,
                       method="percentile", random_state=np.random.default_rng(seed))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarize(per_image: pd.DataFrame, metrics: list[str], confidence: float,
              resamples: int, seed: int) -> pd.DataFrame:
    """Long table: one row per (variant, metric) with mean and interval."""
    rows = []
    for variant, group in per_image.groupby("variant", sort=True):
        for metric in metrics:
            values = group[metric].dropna()
            if values.empty:
                continue
            mean, low, high = bootstrap_mean(values, confidence, resamples, seed)
            rows.append({"variant": variant, "metric": metric, "mean": mean, "ci_low": low,
                         "ci_high": high, "n": len(values), "confidence": confidence})
    return pd.DataFrame(rows, columns=["variant", "metric", "mean", "ci_low", "ci_high", "n", "confidence"])


def timing_table(manifests: pd.DataFrame) -> pd.DataFrame:
    """Per variant: wall and process CPU seconds per image (median over timed batches, each
    batch one repeat), their spread over repeats, the excluded warm-up, and peak memory."""
    frame = manifests.copy()
    for column in ("cpu_seconds", "batch_index", "warmup_seconds"):
        if column not in frame:  # shards written before CPU time was recorded
            frame[column] = 0 if column == "batch_index" else np.nan
    frame["shard"] = frame.path.map(lambda p: str(Path(p).parent)) if "path" in frame else 0
    batches = frame.groupby(["variant", "shard", "batch_index"], sort=True).agg(
        wall=("seconds", "first"), cpu=("cpu_seconds", "first"), warmup=("warmup_seconds", "first"))
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
