"""What the report concludes, apart from how it is drawn: cost ranking and speed-ups, per-variant
verdicts, Pareto fronts, the trade-offs of the glance box, metrics unavailable everywhere.

Every function takes and returns plain DataFrames/dicts (the CSVs of results/metrics/), so the
conclusions are testable without rendering a page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..quality import verdicts

OK = "ok"
# metric -> (label, digits, higher is better)
METRICS = {
    "fd_effnetlite0": ("FD-EffNetLite0 vs reference", 3, False),
    "fid_reference": ("FID vs reference", 2, False),
    "fid_coco": ("FID vs COCO", 2, False),
    "inception_score": ("IS", 2, True),
    "adherence_overall": ("Prompt adherence", 2, True),  # share of images with every stated attribute right
    "clip_score": ("CLIP score", 2, True),
    "lpips": ("LPIPS", 4, False),
    "ssim": ("SSIM", 4, True),
    "psnr": ("PSNR (dB)", 2, True),
}
# One value per variant (distribution.csv), the rest per image (summary.csv).
DISTRIBUTION_METRICS = ("fd_effnetlite0", "fid_reference", "fid_coco", "inception_score")
# Per-attribute adherence: shown in its own section, not as columns or verdict words of every table.
ADHERENCE_ATTRIBUTES = {"adherence_shape": "shape", "adherence_colour": "colour",
                        "adherence_position": "position", "adherence_count": "count"}
# Paired metrics in the order the glance box prefers them to state a trade-off's quality cost.
PRIMARY_PAIRED = ("lpips", "ssim", "clip_score", "psnr")
DEFAULT_SPREAD_BOUND = 0.10
# A trade-off must save at least this share of the reference's cost to make the glance box.
MIN_SAVING = 0.05


def label(metric: str) -> str:
    if metric in ADHERENCE_ATTRIBUTES:
        return f"Prompt adherence, {ADHERENCE_ATTRIBUTES[metric]}"
    return METRICS.get(metric, (metric,))[0]


def short_label(metric: str) -> str:
    """The name without its unit, for running text ("worse in PSNR, SSIM")."""
    return label(metric).split(" (")[0]


# --- cost -------------------------------------------------------------------------------------

def efficiency(timing: pd.DataFrame, reference: str, on_cpu: bool = False,
               spread_bound: float = DEFAULT_SPREAD_BOUND) -> pd.DataFrame:
    """Per variant: cost per image (process CPU seconds on CPU, where a shared machine cannot
    inflate it; wall seconds on GPU), cost relative to the reference, wall-clock speed-up, whether
    that speed-up is resolved (spread over repeats below ``spread_bound`` for both), memory."""
    out = timing.copy()
    cpu = out.get("cpu_seconds_per_image_median", pd.Series(np.nan, index=out.index))
    out["cost_seconds"] = cpu if on_cpu and cpu.notna().all() else out.seconds_per_image_median
    ref = out.set_index("variant").loc[reference]
    out["relative_cost"] = out.cost_seconds / ref.cost_seconds
    out["speedup"] = ref.seconds_per_image_median / out.seconds_per_image_median
    spread = out.get("seconds_spread", pd.Series(np.nan, index=out.index))
    ref_spread = spread[out.variant == reference].iloc[0] if (out.variant == reference).any() else np.nan
    # NaN spread (one repeat only) counts as unresolved: nothing shows the number is stable.
    out["speedup_resolved"] = (spread < spread_bound) & (ref_spread < spread_bound)
    out["memory_reduction"] = 1 - out.peak_memory_mb / ref.peak_memory_mb
    return out.sort_values(["cost_seconds", "variant"]).reset_index(drop=True)


def cost_rank(timing: pd.DataFrame, reference: str, on_cpu: bool = True) -> list[str]:
    """Variants from cheapest to dearest, as the report's technique table lists them."""
    return efficiency(timing, reference, on_cpu).variant.tolist()


# --- verdicts ---------------------------------------------------------------------------------

def judged(differences: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of differences.csv that carry one of the four verdicts (not 'unavailable')."""
    if differences is None or differences.empty:
        return pd.DataFrame(columns=["variant", "metric", "verdict"])
    return differences[differences.verdict.isin(verdicts.VERDICTS)]


def variant_verdicts(differences: pd.DataFrame | None) -> dict[str, str]:
    """One phrase per variant: 'equivalent', or the metrics it is worse / better / inconclusive in."""
    out = {}
    rows = judged(differences)
    for variant, group in rows[~rows.metric.isin(ADHERENCE_ATTRIBUTES)].groupby("variant"):
        by_word = {w: [short_label(m) for m in group[group.verdict == w].metric] for w in verdicts.VERDICTS}
        if len(by_word[verdicts.EQUIVALENT]) == len(group):
            out[variant] = verdicts.EQUIVALENT
            continue
        parts = [f"{w}: {', '.join(by_word[w])}" for w in (verdicts.WORSE, verdicts.BETTER, verdicts.INCONCLUSIVE)
                 if by_word[w]]
        out[variant] = "; ".join(parts)
    return out


def all_equivalent(differences: pd.DataFrame | None) -> list[str]:
    return [v for v, word in variant_verdicts(differences).items() if word == verdicts.EQUIVALENT]


# --- unavailable metrics ----------------------------------------------------------------------

def unavailable_everywhere(*frames: pd.DataFrame | None) -> dict[str, str]:
    """metric -> reason, for metrics no variant has a value of (summary/distribution status)."""
    out = {}
    for frame in frames:
        if frame is None or frame.empty or "status" not in frame:
            continue
        for metric, group in frame.groupby("metric", sort=False):
            if (group.status != OK).all():
                out[metric] = str(group.status.iloc[0])
    if "adherence_overall" in out:  # one name for the adherence metrics in the line
        out = {m: reason for m, reason in out.items() if m not in ADHERENCE_ATTRIBUTES}
    return out


def unavailable_line(missing: dict[str, str]) -> str:
    """One sentence per cause: 'LPIPS, CLIP score, FID, IS: unavailable here — no weights; ...'."""
    causes: dict[str, list[str]] = {}
    for metric, reason in missing.items():
        if "coco_images" in reason or "COCO" in reason:
            cause = "no COCO photographs; set metrics.coco_images, see docs/metrics.md"
        elif "weights" in reason or ".pth" in reason or "safetensors" in reason:
            cause = "no weights; set metrics.weights_dir, see docs/metrics.md"
        else:
            cause = reason.removeprefix("unavailable: ")
        causes.setdefault(cause, []).append(label(metric))
    return " ".join(f"{', '.join(names)}: unavailable here — {cause}." for cause, names in causes.items())


# --- Pareto -----------------------------------------------------------------------------------

def quality_points(summary, distribution, costs: pd.DataFrame) -> pd.DataFrame:
    """Long table: variant, metric, label, value, cost seconds, memory — available values only."""
    costs = costs.set_index("variant")
    rows = []
    for metric, (name, _, higher) in METRICS.items():
        source = distribution if metric in DISTRIBUTION_METRICS else summary
        if source is None or metric not in set(source.metric) or metric == "psnr":
            continue
        column = "value" if source is distribution else "mean"
        for r in source[(source.metric == metric) & (source.status == OK)].itertuples():
            value = getattr(r, column)
            if r.variant in costs.index and np.isfinite(value):
                rows.append({"variant": r.variant, "metric": metric, "label": name, "higher": higher,
                             "value": value, "seconds": costs.loc[r.variant, "cost_seconds"],
                             "memory": costs.loc[r.variant, "peak_memory_mb"]})
    return pd.DataFrame(rows)


def pareto_front(points: pd.DataFrame, cost: str, higher: bool) -> pd.DataFrame:
    """Variants no other variant beats in both cost (lower) and quality."""
    sign = 1 if higher else -1
    keep = []
    for i, p in points.iterrows():
        dominated = ((points[cost] <= p[cost]) & (sign * points.value >= sign * p.value)
                     & ((points[cost] < p[cost]) | (sign * points.value > sign * p.value))).any()
        if not dominated:
            keep.append(i)
    return points.loc[keep].sort_values(cost)


# --- the glance box ---------------------------------------------------------------------------

def tradeoffs(costs: pd.DataFrame, differences: pd.DataFrame | None, reference: str,
              n: int = 3) -> pd.DataFrame:
    """The best ``n`` trade-offs of one run: variants cheaper than the reference that no other
    cheaper variant beats in both cost and the primary paired metric's difference; equivalent ones
    first, then by cost. Cost and quality come from the same run and the same model."""
    rows = judged(differences)
    metric = next((m for m in PRIMARY_PAIRED if m in set(rows.metric)), None)
    if metric is None:
        return pd.DataFrame()
    quality = rows[rows.metric == metric].set_index("variant")
    cheaper = costs[(costs.variant != reference) & (costs.relative_cost < 1 - MIN_SAVING)
                    & costs.variant.isin(quality.index)].copy()
    if cheaper.empty:
        return pd.DataFrame()
    signed = 1 if verdicts.HIGHER_IS_BETTER[metric] else -1
    cheaper["value"] = [signed * quality.loc[v, "difference"] for v in cheaper.variant]
    front = pareto_front(cheaper, "relative_cost", higher=True)
    front = front.assign(metric=metric,
                         equivalent=[quality.loc[v, "verdict"] == verdicts.EQUIVALENT for v in front.variant])
    for column in ("difference", "ci_low", "ci_high", "verdict"):
        front[column] = [quality.loc[v, column] for v in front.variant]
    return front.sort_values(["equivalent", "relative_cost"], ascending=[False, True]).head(n)
