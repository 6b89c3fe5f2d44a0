"""The verdict vocabulary of paired comparisons, without dependencies: the metrics stage writes
verdicts with it (quality/stats.py) and the report reads them (report/analysis.py)."""

from __future__ import annotations

OK = "ok"  # a metric's status when it has a value (else "unavailable: <reason>")
# Reference-relative metrics compare an image with its reference image; their value on the
# reference itself is the identity, so "difference to the reference" is the metric minus that.
IDENTITY = {"ssim": 1.0, "lpips": 0.0}
# Prompt adherence (sdsqueeze.shapes.detect): per image 1 (right), 0 (wrong) or NaN (the prompt does not
# state that attribute); one status column for all five.
ADHERENCE_METRICS = ("adherence_overall", "adherence_shape", "adherence_colour", "adherence_position",
                     "adherence_count")
ADHERENCE_STATUS = "adherence_status"
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "clip_score": True,
                    **dict.fromkeys(ADHERENCE_METRICS, True)}
# Four-way verdict of a paired interval against a practical-equivalence margin (a region of
# practical equivalence, as in Kruschke's ROPE): a pure "interval covers 0" test calls any
# non-bit-identical variant different, which is true and useless.
EQUIVALENT, WORSE, BETTER, INCONCLUSIVE = "equivalent", "worse", "better", "inconclusive"
VERDICTS = (EQUIVALENT, WORSE, BETTER, INCONCLUSIVE)
# Identical images have infinite PSNR; capped so one identical image keeps a mean finite.
PSNR_CAP_DB = 100.0
# Defaults of metrics.equivalence (schemas/config.schema.yaml documents them).
# adherence: a fraction of images, one margin for every attribute (0.05 = 5 percentage points).
DEFAULT_EQUIVALENCE = {"ssim": 0.005, "lpips": 0.01, "clip_score": 0.2, "psnr_db": 40.0, "adherence": 0.05}


def margin_key(metric: str) -> str:
    """The metrics.equivalence key that judges a metric."""
    if metric == "psnr":
        return "psnr_db"
    return "adherence" if metric in ADHERENCE_METRICS else metric


def status_column(metric: str) -> str:
    return ADHERENCE_STATUS if metric in ADHERENCE_METRICS else f"{metric}_status"


def margin_verdict(low: float, high: float, margin: float, higher_is_better: bool) -> str:
    """Verdict of a difference interval [low, high] (variant − reference) against ±margin.

    Inside [−margin, margin]: equivalent. Wholly beyond the margin on one side: worse or better.
    Otherwise the data cannot tell (the interval straddles a margin): inconclusive.
    """
    if -margin <= low and high <= margin:
        return EQUIVALENT
    if high < -margin or low > margin:
        gain = high if high < -margin else low
        return BETTER if (gain > 0) == higher_is_better else WORSE
    return INCONCLUSIVE


def threshold_verdict(low: float, high: float, threshold: float) -> str:
    """PSNR against the reference is a value, not a difference (identity = ∞): an interval wholly
    at or above the threshold is equivalent, wholly below it worse."""
    if low >= threshold:
        return EQUIVALENT
    if high < threshold:
        return WORSE
    return INCONCLUSIVE
