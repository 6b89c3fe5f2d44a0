"""Report section: Q-Diffusion's table (bits × W/O vs W per calibration kind), the ablation that
attributes the change from W/O to the best variant to each axis, and every ptq variant's row.

The table functions take plain frames (variant specs, per-image metrics, sizes) so that the report
and docs/quantization.md (``python -m sdsqueeze.quant.doctable``) build the same tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import analysis
from .page import ReportContext, Section, source_note, table_html

CALIBRATION_LABELS = {"none": "W/O", "raw_data": "W (raw data)", "noise_data": "W (noise)",
                      "timestep_aware": "W (timestep-aware)"}
METRIC_DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "fid": 2, "is": 2, "clip": 3}
# Every axis of a ptq spec with its value when the key is absent (schemas/config.schema.yaml).
AXES = {"calibration": "none", "ranges": "minmax", "reconstruction": "none",
        "quant_attention": False, "split_shortcut": False}
METHOD_ORDER = {"reconstruction": ["none", "adaround", "brecq"], "ranges": ["minmax", "mse"]}
# The ablation's steps, in the order the recipe applies them; the last two are extras added to
# the best variant (they change what is quantized or how, not how well ranges are found).
CHAIN = (("data", "calibration"), ("range search", "ranges"), ("reconstruction", "reconstruction"))
EXTRAS = (("attention quantization", "quant_attention"), ("shortcut splitting", "split_shortcut"))


def _cell(row: pd.Series, digits: int) -> str:
    if np.isinf(row["mean"]):
        return "identical (∞)"
    text = f"{row['mean']:.{digits}f}"
    if np.isfinite(row.get("ci_low", np.nan)) and row["ci_low"] != row["ci_high"]:
        text += f" [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"
    return text


def ptq_axes(variants: dict) -> pd.DataFrame:
    """One row per ptq variant: its bits label and every axis, absent keys at their defaults."""
    rows = []
    for name, spec in variants.items():
        ptq = (spec or {}).get("ptq")
        if ptq:
            rows.append({"variant": name, "bits": f"W{ptq['weight_bits']}A{ptq['act_bits']}",
                         "weight_bits": ptq["weight_bits"], "act_bits": ptq["act_bits"],
                         **{axis: ptq.get(axis, default) for axis, default in AXES.items()}})
    columns = ["variant", "bits", "weight_bits", "act_bits", *AXES]
    return pd.DataFrame(rows, columns=columns).sort_values(["weight_bits", "act_bits", "variant"],
                                                           ascending=[False, False, True])


def per_prompt(per_image: pd.DataFrame, metric: str) -> pd.DataFrame:
    """prompt_id × variant: the metric averaged over each prompt's images (the resampling unit)."""
    return per_image.groupby(["prompt_id", "variant"])[metric].mean().unstack("variant")


def bootstrap(values, settings: dict) -> tuple[float, float, float]:
    from ..quality.stats import bootstrap_mean

    return bootstrap_mean(np.asarray(values, dtype=float), settings.get("confidence", 0.95),
                          settings.get("resamples", 2000), settings.get("seed", 0))


def interval_text(mean: float, low: float, high: float, digits: int = 2, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{mean:{sign}.{digits}f} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def method_rank(row: pd.Series) -> tuple[int, int]:
    return (METHOD_ORDER["reconstruction"].index(row.reconstruction), METHOD_ORDER["ranges"].index(row.ranges))


def plain(axes: pd.DataFrame) -> pd.DataFrame:
    """Variants without the extras (attention quantization, shortcut splitting)."""
    return axes[~axes.quant_attention.astype(bool) & ~axes.split_shortcut.astype(bool)]


def seed_table(axes: pd.DataFrame, per_image: pd.DataFrame, metric: str = "psnr",
               settings: dict | None = None) -> pd.DataFrame:
    """Q-Diffusion's layout: rows bits W/A, columns W/O and W per calibration kind.

    A cell is the variant of those bits and calibration without extras whose method is the
    fullest (reconstruction over range search over min-max), as the seed runs AdaRound throughout.
    """
    settings = settings or {}
    scores = per_prompt(per_image, metric)
    kinds = [k for k in CALIBRATION_LABELS if k in set(axes.calibration)]
    rows = []
    for bits, group in plain(axes).groupby("bits", sort=False):
        row = {"Bits (W/A)": bits}
        for kind in kinds:
            candidates = group[(group.calibration == kind) & group.variant.isin(scores.columns)]
            if candidates.empty:
                row[CALIBRATION_LABELS[kind]] = "not in the grid"
                continue
            chosen = max(candidates.itertuples(index=False), key=lambda r: method_rank(pd.Series(r._asdict())))
            values = scores[chosen.variant].dropna()
            row[CALIBRATION_LABELS[kind]] = f"{interval_text(*bootstrap(values, settings))} ({chosen.variant})"
        rows.append(row)
    return pd.DataFrame(rows)


def find_variant(group: pd.DataFrame, spec: dict) -> str | None:
    match = group
    for axis, value in spec.items():
        match = match[match[axis] == value]
    return match.variant.iloc[0] if len(match) else None


def difference_row(bits: str, step: str, before: str | None, after: str | None, scores: pd.DataFrame,
                   metric: str, settings: dict) -> dict:
    row = {"Bits (W/A)": bits, "step": step, "from": before or "not in the grid",
           "to": after or "not in the grid", f"Δ{metric.upper()}": None, f"{metric.upper()} after": None}
    if before in scores and after in scores:
        diffs = (scores[after] - scores[before]).dropna()
        row[f"Δ{metric.upper()}"] = interval_text(*bootstrap(diffs, settings), signed=True)
        row[f"{metric.upper()} after"] = interval_text(*bootstrap(scores[after].dropna(), settings))
    return row


def chain(group: pd.DataFrame, target: pd.Series) -> list[tuple[str, str | None]]:
    """(step label, variant) from W/O to ``target``, one axis of CHAIN at a time."""
    spec, steps = dict(AXES), []
    for step, axis in CHAIN:
        if target[axis] != spec[axis]:
            spec[axis] = target[axis]
            steps.append((f"+ {step} ({target[axis]})", find_variant(group, spec)))
    return steps


def chain_target(group: pd.DataFrame, scores: pd.DataFrame) -> pd.Series | None:
    """The calibrated variant without extras with the fullest method (reconstruction over range
    search over min-max; the higher mean score among equals) whose whole chain from W/O is in the
    grid, so that every axis gets its own step (else the fullest of all, missing steps shown)."""
    calibrated = plain(group)[plain(group).calibration != "none"]
    if calibrated.empty:
        return None
    means = scores[calibrated.variant].mean().values
    order = sorted(range(len(calibrated)), key=lambda i: (method_rank(calibrated.iloc[i]), means[i]), reverse=True)
    ranked = [calibrated.iloc[i] for i in order]
    complete = [row for row in ranked if all(v for _, v in chain(group, row))]
    return complete[0] if complete else ranked[0]


def best_variant(group: pd.DataFrame, scores: pd.DataFrame) -> str:
    """The calibrated variant without extras of highest mean score."""
    calibrated = plain(group)[plain(group).calibration != "none"]
    return calibrated.variant.iloc[int(np.argmax(scores[calibrated.variant].mean().values))]


def ablation_table(axes: pd.DataFrame, per_image: pd.DataFrame, metric: str = "psnr",
                   settings: dict | None = None) -> pd.DataFrame:
    """Per bits: W/O -> the fullest variant, one axis at a time (data, range search,
    reconstruction), W/O -> the best variant in total, then each extra (attention quantization,
    shortcut splitting) against the same variant without it; every step is the paired difference
    over prompts with its bootstrap interval."""
    settings = settings or {}
    scores = per_prompt(per_image, metric)
    rows = []
    for bits, group in axes.groupby("bits", sort=False):
        group = group[group.variant.isin(scores.columns)]
        start, target = find_variant(group, AXES), chain_target(group, scores)
        if start is None or target is None:
            continue
        before = start
        for step, after in chain(group, target):
            rows.append(difference_row(bits, step, before, after, scores, metric, settings))
            before = after
        rows.append(difference_row(bits, "W/O -> best (total)", start, best_variant(group, scores), scores,
                                   metric, settings))
        for step, axis in EXTRAS:
            for _, extra in group[group[axis].astype(bool)].iterrows():
                base = find_variant(group, {**{a: extra[a] for a in AXES}, axis: False})
                rows.append(difference_row(bits, f"+ {step}", base, extra.variant, scores, metric, settings))
    return pd.DataFrame(rows)


def quant_table(variants: dict, reference: str, summary: pd.DataFrame, sizes: pd.DataFrame) -> pd.DataFrame:
    """Every variant: baseline first, then ptq variants by bits (high first), axes and quality."""
    metrics = [m for m in dict.fromkeys(summary.metric) if m not in analysis.ADHERENCE_ATTRIBUTES] \
        if not summary.empty else []  # adherence per attribute: its own section
    sizes = sizes.set_index("variant")
    entries = [(reference, None)] + [(name, spec["ptq"]) for name, spec in variants.items()
                                     if (spec or {}).get("ptq")]
    rows = []
    for name, ptq in entries:
        size = sizes.loc[name] if name in sizes.index else None
        axes = {axis: (ptq or {}).get(axis, default) for axis, default in AXES.items()}
        row = {
            "Calib": "Baseline" if ptq is None else CALIBRATION_LABELS[axes["calibration"]],
            "Bits (W/A)": (f"W{int(size.weight_bits)}A{int(size.act_bits)}" if ptq is None and size is not None
                           else f"W{ptq['weight_bits']}A{ptq['act_bits']}" if ptq else ""),
            "variant": name,
            "ranges": axes["ranges"] if ptq else "",
            "reconstruction": axes["reconstruction"] if ptq else "",
            "extras": ", ".join(a for a in ("quant_attention", "split_shortcut") if axes[a]) if ptq else "",
        }
        quality = summary[summary.variant == name].set_index("metric")
        for metric in metrics:
            label = metric.upper()
            if ptq is None:
                row[label] = "reference"
            elif metric in quality.index:
                row[label] = _cell(quality.loc[metric], METRIC_DIGITS.get(metric, 3))
            else:
                row[label] = None
        row["UNet size (MB)"] = f"{size.mb:.2f}" if size is not None else None
        row["size vs baseline"] = f"{size.ratio_to_reference:.3f}" if size is not None else None
        order = (0 if ptq is None else 1, -(ptq or {}).get("weight_bits", 99), -(ptq or {}).get("act_bits", 99),
                 axes["calibration"] != "none", axes["calibration"], name)
        rows.append((order, row))
    rows.sort(key=lambda r: r[0])
    return pd.DataFrame([r[1] for r in rows])


NOTE = (
    "<p class='muted'>W/O: ranges by plain min-max over one real guided UNet batch (a caption of no "
    "evaluation image with the empty prompt, [uncond; cond], the pipeline's initial latents at the "
    "schedule's first timestep); no search, no reconstruction. W: ranges over the named calibration "
    "set; <code>ranges: mse</code> adds the squared-error clipping search, <code>reconstruction</code> "
    "AdaRound (per layer) or BRECQ (per block). Attention quantization: q, k, v at the activation "
    "bits, the softmax output at 8 bits, the softmax itself in full precision. Differences are "
    "paired per prompt (same seeds); intervals are percentile bootstraps over prompts. Fake "
    "quantization: it shows the quality cost, not speed. Size: b-bit weights plus a float32 scale "
    "and a b-bit zero point per output channel. See docs/quantization.md.</p>")


def readable(table: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Human headers; metrics unavailable for every variant left out (one line at the top says so)."""
    missing = analysis.unavailable_everywhere(summary)
    table = table.drop(columns=[m.upper() for m in missing if m.upper() in table])
    names = {m.upper(): analysis.label(m) for m in analysis.METRICS}
    return table.rename(columns={**names, "variant": "Variant", "size vs baseline": "Size vs baseline"})


def quant_section(ctx: ReportContext) -> Section | None:
    if not (ctx.has("quant_sizes") and ctx.has("summary")):
        return None
    variants = ctx.config["variants"]
    if not any((spec or {}).get("ptq") for spec in variants.values()):
        return None
    summary = pd.read_csv(ctx.inputs["summary"][0])
    sizes = pd.read_csv(ctx.inputs["quant_sizes"][0])
    body = ""
    if ctx.has("per_image"):
        per_image = pd.concat([pd.read_csv(p) for p in ctx.inputs["per_image"]], ignore_index=True)
        metrics = ctx.config.get("metrics", {})
        settings = {"confidence": metrics.get("confidence", 0.95),
                    "resamples": metrics.get("bootstrap_resamples", 2000), "seed": ctx.config.get("seed", 0)}
        axes = ptq_axes(variants)
        body += table_html(seed_table(axes, per_image, "psnr", settings),
                           "Q-Diffusion's table: PSNR (dB) against the full-precision reference, "
                           "mean [95% CI over prompts] (variant)")
        body += table_html(ablation_table(axes, per_image, "psnr", settings),
                           "Ablation: the change from W/O to the best variant, one axis at a time "
                           "(paired PSNR difference in dB over prompts [95% CI])")
    body += table_html(readable(quant_table(variants, ctx.config["reference"], summary, sizes), summary),
                       "Every ptq variant: quality against the reference (mean [95% CI]) and "
                       "bits-accounted size")
    body += source_note(ctx.inputs["summary"][0], ctx.inputs["quant_sizes"][0]) + NOTE
    return Section("Quantization (Q-Diffusion table)", body, "quantization")
