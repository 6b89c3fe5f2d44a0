"""Per-metric means with bootstrap intervals over prompts, and paired differences to the reference.

Images of one prompt share its text (and, across variants, its seed), so they are not independent:
the unit of resampling is the prompt (each prompt's images averaged first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .images import KEYS
from .verdicts import (  # noqa: F401 - the verdict vocabulary, re-exported for callers
    ADHERENCE_METRICS,
    BETTER,
    DEFAULT_EQUIVALENCE,
    EQUIVALENT,
    HIGHER_IS_BETTER,
    IDENTITY,
    INCONCLUSIVE,
    OK,
    PSNR_CAP_DB,
    VERDICTS,
    WORSE,
    margin_key,
    margin_verdict,
    status_column,
    threshold_verdict,
)

PER_IMAGE_METRICS = ["psnr", "ssim", "lpips", "clip_score", *ADHERENCE_METRICS]


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
    """``ok`` when some image has the metric (adherence: the images whose prompt states
    attributes), else the first reason it is unavailable."""
    column = status_column(metric)
    if column not in group:
        return OK
    statuses = group[column].dropna().unique()
    bad = [s for s in statuses if s != OK]
    return OK if OK in statuses or not bad else bad[0]


def per_prompt(group: pd.DataFrame, metric: str) -> pd.Series:
    """Mean per prompt over the images that have a value (a prompt without any drops out)."""
    return group.groupby("prompt_id")[metric].mean().dropna()


def summarize(per_image: pd.DataFrame, metric_names: list[str], confidence: float,
              resamples: int, seed: int) -> pd.DataFrame:
    """One row per (variant, metric): mean over images, bootstrap interval over prompts, status."""
    rows = []
    for variant, group in per_image.groupby("variant", sort=True):
        for metric in metric_names:
            if metric not in group:
                continue
            status = status_of(group, metric)
            valued = group[group[metric].notna()] if group[metric].notna().any() else group
            row = {"variant": variant, "metric": metric, "mean": np.nan, "ci_low": np.nan,
                   "ci_high": np.nan, "n_prompts": valued.prompt_id.nunique(), "n": len(valued),
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
                       confidence: float, resamples: int, seed: int,
                       equivalence: dict | None = None) -> pd.DataFrame:
    """variant − reference per prompt with a bootstrap interval, judged against the metric's
    practical-equivalence margin (``equivalence``, defaults DEFAULT_EQUIVALENCE).

    CLIP score is paired image by image (same prompt, same seed); SSIM and LPIPS already compare
    with the reference image, so their difference is the value minus the identity (1, 0). PSNR's
    identity is infinite, so its row holds the PSNR itself, judged by the ``psnr_db`` threshold.
    Adherence is paired image by image too, over the images whose prompt states the attribute,
    judged by the ``adherence`` margin.
    """
    bounds = {**DEFAULT_EQUIVALENCE, **(equivalence or {})}
    ref = per_image[per_image.variant == reference]
    rows = []
    for variant, group in per_image[per_image.variant != reference].groupby("variant", sort=True):
        for metric in metric_names:
            if metric not in group:
                continue
            status = status_of(group, metric) if metric in IDENTITY or metric == "psnr" else \
                next((s for s in (status_of(group, metric), status_of(ref, metric)) if s != OK), OK)
            row = {"variant": variant, "metric": metric, "difference": np.nan, "ci_low": np.nan,
                   "ci_high": np.nan, "n_prompts": group.prompt_id.nunique(),
                   "higher_is_better": HIGHER_IS_BETTER[metric], "verdict": status,
                   "test": _test_of(metric), "bound": bounds[margin_key(metric)]}
            by_prompt = _paired_by_prompt(group, ref, metric) if status == OK else None
            if by_prompt is not None and not len(by_prompt):
                row["verdict"] = "unavailable: no paired values"
            elif by_prompt is not None:
                mean, low, high = bootstrap_mean(by_prompt, confidence, resamples, seed)
                verdict = threshold_verdict(low, high, row["bound"]) if metric == "psnr" else \
                    margin_verdict(low, high, row["bound"], HIGHER_IS_BETTER[metric])
                row.update(difference=mean, ci_low=low, ci_high=high, verdict=verdict, n_prompts=len(by_prompt))
            rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "metric", "difference", "ci_low", "ci_high",
                                       "n_prompts", "higher_is_better", "verdict", "test", "bound"])


def _paired_by_prompt(group: pd.DataFrame, ref: pd.DataFrame, metric: str) -> np.ndarray:
    """Per prompt, the mean of what is judged: PSNR itself, the value minus the identity (SSIM,
    LPIPS), or the image-by-image difference to the reference (CLIP score, adherence); images
    without a value (an attribute their prompt does not state) drop out."""
    if metric == "psnr":
        # Identical images have infinite PSNR; capped so one identical image does not make the
        # whole mean (and interval) infinite.
        values, prompts = group[metric].clip(upper=PSNR_CAP_DB), group.prompt_id
    elif metric in IDENTITY:
        values, prompts = group[metric] - IDENTITY[metric], group.prompt_id
    else:
        paired = group.merge(ref, on=KEYS, suffixes=("", "_ref"), validate="one_to_one")
        values, prompts = paired[metric] - paired[f"{metric}_ref"], paired.prompt_id
    return values.groupby(prompts.to_numpy()).mean().dropna().to_numpy()


def _test_of(metric: str) -> str:
    return "value >= threshold" if metric == "psnr" else "|difference| <= margin"
