"""Per-metric means with bootstrap intervals over prompts, and paired differences to the reference.

Images of one prompt share its text (and, across variants, its seed), so they are not independent:
the unit of resampling is the prompt (each prompt's images averaged first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluate import OK
from .images import KEYS

PER_IMAGE_METRICS = ["psnr", "ssim", "lpips", "clip_score"]
# Reference-relative metrics compare an image with its reference image; their value on the
# reference itself is the identity, so "difference to the reference" is the metric minus that.
IDENTITY = {"ssim": 1.0, "lpips": 0.0}
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "clip_score": True}
NOT_DISTINGUISHABLE = "not distinguishable from the reference"
DIFFERS = "differs from the reference"


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


def status_of(group: pd.DataFrame, metric: str) -> str:
    column = f"{metric}_status"
    if column not in group:
        return OK
    bad = [s for s in group[column].dropna().unique() if s != OK]
    return bad[0] if bad else OK


def per_prompt(group: pd.DataFrame, metric: str) -> pd.Series:
    return group.groupby("prompt_id")[metric].mean()


def summarize(per_image: pd.DataFrame, metric_names: list[str], confidence: float,
              resamples: int, seed: int) -> pd.DataFrame:
    """One row per (variant, metric): mean over images, bootstrap interval over prompts, status."""
    rows = []
    for variant, group in per_image.groupby("variant", sort=True):
        for metric in metric_names:
            if metric not in group:
                continue
            status = status_of(group, metric)
            row = {"variant": variant, "metric": metric, "mean": np.nan, "ci_low": np.nan,
                   "ci_high": np.nan, "n_prompts": group.prompt_id.nunique(), "n": len(group),
                   "confidence": confidence, "status": status}
            if status == OK and group[metric].notna().any():
                row["mean"], row["ci_low"], row["ci_high"] = bootstrap_mean(
                    per_prompt(group, metric).to_numpy(), confidence, resamples, seed)
            elif status == OK:
                row["status"] = "unavailable: no values"
            rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "metric", "mean", "ci_low", "ci_high",
                                       "n_prompts", "n", "confidence", "status"])


def paired_differences(per_image: pd.DataFrame, reference: str, metric_names: list[str],
                       confidence: float, resamples: int, seed: int) -> pd.DataFrame:
    """variant − reference per prompt, bootstrap interval; an interval covering 0 is a tie.

    CLIP score is paired image by image (same prompt, same seed); SSIM and LPIPS already compare
    with the reference image, so their difference is the value minus the identity (1, 0). PSNR
    is left out: its identity value is infinite.
    """
    ref = per_image[per_image.variant == reference]
    rows = []
    for variant, group in per_image[per_image.variant != reference].groupby("variant", sort=True):
        for metric in metric_names:
            if metric not in group or metric == "psnr":
                continue
            status = status_of(group, metric) if metric in IDENTITY else \
                next((s for s in (status_of(group, metric), status_of(ref, metric)) if s != OK), OK)
            row = {"variant": variant, "metric": metric, "difference": np.nan, "ci_low": np.nan,
                   "ci_high": np.nan, "n_prompts": group.prompt_id.nunique(),
                   "higher_is_better": HIGHER_IS_BETTER[metric], "verdict": status}
            if status == OK:
                if metric in IDENTITY:
                    diffs = group[metric] - IDENTITY[metric]
                    prompts = group.prompt_id
                else:
                    paired = group.merge(ref, on=KEYS, suffixes=("", "_ref"), validate="one_to_one")
                    diffs = paired[metric] - paired[f"{metric}_ref"]
                    prompts = paired.prompt_id
                by_prompt = diffs.groupby(prompts.to_numpy()).mean().to_numpy()
                mean, low, high = bootstrap_mean(by_prompt, confidence, resamples, seed)
                row.update(difference=mean, ci_low=low, ci_high=high,
                           verdict=NOT_DISTINGUISHABLE if low <= 0 <= high else DIFFERS)
            rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "metric", "difference", "ci_low", "ci_high",
                                       "n_prompts", "higher_is_better", "verdict"])
