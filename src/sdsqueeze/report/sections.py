"""The report's sections, in page order. Each reads only the CSVs and images named in the
report rule's inputs; a stage that is not configured simply contributes no section.

Quality numbers come from results/metrics/{model}/summary.csv (per-image metrics: mean, bootstrap
interval over prompts, status), differences.csv (paired against the reference) and
distribution.csv (FID, IS per variant); a metric without weights shows its
``unavailable: <reason>`` text, never a number.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .. import io
from . import accel
from .page import ReportContext, Section, source_note, table_html

# metric -> (label, digits, higher is better)
METRICS = {
    "fid_reference": ("FID vs reference", 2, False),
    "fid_coco": ("FID vs COCO", 2, False),
    "inception_score": ("IS", 2, True),
    "clip_score": ("CLIP score", 2, True),
    "lpips": ("LPIPS", 4, False),
    "ssim": ("SSIM", 4, True),
    "psnr": ("PSNR (dB)", 2, True),
}
OK = "ok"


def _num(x: float, digits: int) -> str:
    """Fixed digits, but values too small to show that way (e.g. −3.7e-08) in scientific form."""
    if x != 0 and abs(x) < 0.5 * 10 ** -digits:
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def _fmt_interval(mean: float, low: float, high: float, digits: int) -> str:
    if np.isinf(mean):
        return "identical (∞)"
    return f"{_num(mean, digits)} [{_num(low, digits)}, {_num(high, digits)}]"


class Notes:
    """Numbered footnotes for unavailable metrics, so table cells stay short."""

    def __init__(self):
        self.reasons: list[str] = []

    def cell(self, status: str) -> str:
        if status not in self.reasons:
            self.reasons.append(status)
        return f"unavailable [{self.reasons.index(status) + 1}]"

    def html(self) -> str:
        if not self.reasons:
            return ""
        items = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        return f"<ol class='notes'>{items}</ol>"


def _read(ctx: ReportContext, name: str) -> pd.DataFrame | None:
    return pd.read_csv(ctx.inputs[name][0]) if ctx.has(name) else None


def quality_cell(summary: pd.DataFrame | None, distribution: pd.DataFrame | None, variant: str,
                 metric: str, notes: Notes) -> str:
    """A metric of one variant as text: value [interval], or 'unavailable [k]'."""
    digits = METRICS[metric][1]
    if distribution is not None and metric in set(distribution.metric):
        row = distribution[(distribution.variant == variant) & (distribution.metric == metric)]
        if row.empty:
            return "—"
        r = row.iloc[0]
        if r.status != OK:
            return notes.cell(r.status)
        return f"{r.value:.{digits}f}" + (f" ± {r['std']:.{digits}f}" if np.isfinite(r["std"]) else "")
    if summary is None:
        return "—"
    row = summary[(summary.variant == variant) & (summary.metric == metric)]
    if row.empty:
        return "—"
    r = row.iloc[0]
    status = r.get("status", OK)
    if isinstance(status, str) and status != OK:
        return notes.cell(status)
    return _fmt_interval(r["mean"], r.ci_low, r.ci_high, digits)


def efficiency(timing: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Speedup (reference s/image ÷ variant s/image, medians) and memory reduction per variant."""
    ref = timing.set_index("variant").loc[reference]
    out = timing.copy()
    out["speedup"] = ref.seconds_per_image_median / out.seconds_per_image_median
    out["memory_reduction"] = 1 - out.peak_memory_mb / ref.peak_memory_mb
    return out


def verdicts(differences: pd.DataFrame | None) -> dict[str, str]:
    """Per variant: which metrics are not distinguishable from the reference."""
    if differences is None or differences.empty:
        return {}
    out = {}
    for variant, group in differences.groupby("variant"):
        ties = [METRICS[m][0] for m in group[group.verdict == "not distinguishable from the reference"].metric]
        differs = [METRICS[m][0] for m in group[group.verdict == "differs from the reference"].metric]
        parts = []
        if ties:
            parts.append("not distinguishable from the reference in " + ", ".join(ties))
        if differs:
            parts.append("differs in " + ", ".join(differs))
        out[variant] = "; ".join(parts) or "no paired metric available"
    return out


def technique_table(timing, summary, distribution, differences, reference, notes) -> pd.DataFrame:
    """OptSD's table: speedup, memory reduction, FID, CLIP score — plus LPIPS/SSIM and the verdict."""
    eff = efficiency(timing, reference)
    verdict = verdicts(differences)
    rows = []
    for r in eff.sort_values("speedup", ascending=False).itertuples():
        rows.append({
            "technique (variant)": r.variant + (" — reference" if r.variant == reference else ""),
            "speedup": f"{r.speedup:.2f}×",
            "memory reduction": f"{100 * r.memory_reduction:.0f}%",
            "s / image": f"{r.seconds_per_image_median:.3f}",
            "FID vs reference": quality_cell(summary, distribution, r.variant, "fid_reference", notes),
            "CLIP score [95% CI]": quality_cell(summary, distribution, r.variant, "clip_score", notes),
            "LPIPS [95% CI]": "reference" if r.variant == reference
            else quality_cell(summary, distribution, r.variant, "lpips", notes),
            "SSIM [95% CI]": "reference" if r.variant == reference
            else quality_cell(summary, distribution, r.variant, "ssim", notes),
            "verdict (paired, 95%)": "—" if r.variant == reference else verdict.get(r.variant, "—"),
        })
    return pd.DataFrame(rows)


def variants_section(ctx: ReportContext) -> Section | None:
    """OptSD's technique table, computed from timing.csv and the metrics."""
    if not (ctx.has("summary") and ctx.has("timing")):
        return None
    timing, summary = _read(ctx, "timing"), _read(ctx, "summary")
    distribution, differences = _read(ctx, "distribution"), _read(ctx, "differences")
    notes = Notes()
    table = technique_table(timing, summary, distribution, differences, ctx.config["reference"], notes)
    kind = ", ".join(sorted(timing.memory_kind.astype(str).unique()))
    sources = [ctx.inputs[n][0] for n in ("timing", "summary", "distribution", "differences") if ctx.has(n)]
    body = (
        table_html(table, "Techniques: speed, memory and quality against the reference (OptSD's table)")
        + notes.html()
        + f"<p class='muted'>Speedup = reference median s/image ÷ variant's; memory reduction = 1 − peak ÷ "
          f"reference peak (memory measured as: {html.escape(kind)}). Intervals: 95% percentile bootstrap "
          "over prompts. A verdict “not distinguishable” means the paired 95% interval of "
          "(variant − reference) covers zero. FID has no interval (one number per image set).</p>"
        + source_note(*sources)
    )
    return Section("Techniques", body, "techniques")


def quality_section(ctx: ReportContext) -> Section | None:
    """Every per-image metric with its interval and status, and the paired differences."""
    summary = _read(ctx, "summary")
    if summary is None:
        return None
    notes = Notes()
    names = [m for m in METRICS if m in set(summary.metric)]
    reference = ctx.config["reference"]
    rows = [{"variant": v + (" — reference" if v == reference else ""),
             **{METRICS[m][0]: quality_cell(summary, None, v, m, notes) for m in names}}
            for v in sorted(summary.variant.unique())]
    body = table_html(pd.DataFrame(rows), "Per-image metrics: mean [95% bootstrap interval over prompts]")
    differences = _read(ctx, "differences")
    if differences is not None and not differences.empty:
        diff_rows = []
        for r in differences.itertuples():
            label, digits, _ = METRICS[r.metric]
            ok = r.verdict.startswith(("not distinguishable", "differs"))
            diff_rows.append({
                "variant": r.variant, "metric": label,
                "variant − reference [95% CI]": _fmt_interval(r.difference, r.ci_low, r.ci_high, digits)
                if ok else notes.cell(r.verdict),
                "prompts": r.n_prompts, "verdict": r.verdict if ok else "—",
            })
        body += table_html(pd.DataFrame(diff_rows), "Paired differences against the reference")
        body += ("<p class='muted'>CLIP score is paired image by image (same prompt and seed); SSIM and "
                 "LPIPS already compare each image with its reference image, so their difference is the "
                 "value minus the identity (1 and 0). PSNR is omitted here (identity = ∞).</p>")
    body += notes.html() + source_note(ctx.inputs["summary"][0],
                                       *([ctx.inputs["differences"][0]] if ctx.has("differences") else []))
    return Section("Quality with intervals", body, "quality")


def distribution_section(ctx: ReportContext) -> Section | None:
    distribution = _read(ctx, "distribution")
    if distribution is None:
        return None
    notes = Notes()
    variants = sorted(distribution.variant.unique())
    rows = []
    for v in variants:
        row = {"variant": v, "images": int(distribution[distribution.variant == v].n_images.iloc[0])}
        for m in ("fid_reference", "fid_coco", "inception_score"):
            row[METRICS[m][0]] = quality_cell(None, distribution, v, m, notes)
        rows.append(row)
    splits = ctx.config.get("metrics", {}).get("is_splits", 10)
    body = (table_html(pd.DataFrame(rows), "Distribution metrics, one value per variant")
            + notes.html()
            + "<p class='muted'>FID: pytorch-fid's Inception pool3 features (PNG → [0,1] → bilinear 299×299), "
              "Fréchet distance to the reference variant's images and, when <code>metrics.coco_images</code> is "
              "set, to the selected prompts' COCO val2017 photos (center-cropped, resized to the generated "
              f"size). IS: the same network's 1008-way logits without bias, {splits} in-order splits, "
              "mean ± std over splits. No bootstrap interval: FID's small-sample bias dominates at these "
              "sizes, so compare FID only between variants with the same number of images.</p>"
            + source_note(ctx.inputs["distribution"][0]))
    return Section("FID and Inception Score", body, "distribution")


def _quality_points(summary, distribution, timing, reference) -> pd.DataFrame:
    """Long table: variant, quality metric label, value, seconds, memory — available values only."""
    eff = efficiency(timing, reference).set_index("variant")
    rows = []
    for metric, (label, _, higher) in METRICS.items():
        source = distribution if metric.startswith(("fid", "inception")) else summary
        if source is None or metric not in set(source.metric) or metric == "psnr":
            continue
        column = "value" if source is distribution else "mean"
        for r in source[(source.metric == metric) & (source.status == OK)].itertuples():
            value = getattr(r, column)
            if r.variant in eff.index and np.isfinite(value):
                rows.append({"variant": r.variant, "metric": metric, "label": label, "higher": higher,
                             "value": value, "seconds": eff.loc[r.variant, "seconds_per_image_median"],
                             "memory": eff.loc[r.variant, "peak_memory_mb"]})
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


def pareto_section(ctx: ReportContext) -> Section | None:
    if not (ctx.has("summary") and ctx.has("timing")):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    points = _quality_points(_read(ctx, "summary"), _read(ctx, "distribution"), _read(ctx, "timing"),
                             ctx.config["reference"])
    if points.empty:
        return None
    metrics_shown = list(dict.fromkeys(points.metric))
    fig, axes = plt.subplots(len(metrics_shown), 2, squeeze=False, figsize=(10, 3.3 * len(metrics_shown)))
    names = sorted(points.variant.unique())
    # husl spaces any number of variants evenly (tab10 has only 10 colours)
    palette = dict(zip(names, sns.color_palette("husl", len(names))))
    for row, metric in enumerate(metrics_shown):
        sub = points[points.metric == metric]
        for col, (cost, xlabel) in enumerate((("seconds", "seconds per image (median)"),
                                               ("memory", "peak memory (MB)"))):
            ax = axes[row][col]
            for p in sub.itertuples():
                ax.scatter(getattr(p, cost), p.value, color=palette[p.variant], s=60, zorder=3)
                ax.annotate(p.variant, (getattr(p, cost), p.value), fontsize=8,
                            xytext=(4, 4), textcoords="offset points")
            front = pareto_front(sub, cost, bool(sub.higher.iloc[0]))
            ax.plot(front[cost], front.value, "--o", color="#888", mfc="none", ms=13, zorder=2,
                    label="Pareto front")
            arrow = "↑ better" if sub.higher.iloc[0] else "↓ better"
            ax.set(xlabel=xlabel, ylabel=f"{sub.label.iloc[0]} ({arrow})")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    figure = ctx.figure_path("variants.png")  # the report rule declares this name
    io.save_figure(fig, figure, dpi=100)
    plt.close(fig)
    body = (f'<img class="figure" src="{ctx.rel(figure)}" alt="Pareto plots: speed and memory vs quality">'
            "<p class='muted'>Each row one quality metric that has values; left speed, right memory. The "
            "dashed line joins the variants no other variant beats in both cost and quality. Metrics "
            "marked unavailable have no row.</p>" + source_note(ctx.inputs["timing"][0], ctx.inputs["summary"][0]))
    return Section("Pareto: speed and memory vs quality", body, "pareto")


def step_points(ctx: ReportContext, points: pd.DataFrame) -> pd.DataFrame:
    """Quality per (scheduler, steps), from variants that differ from the reference only there."""
    from ..variants import resolve_variant

    config = ctx.config
    reference = resolve_variant(config, config["reference"])
    free = {"scheduler", "steps", "name"}
    specs = {}
    for name in config["variants"]:
        spec = resolve_variant(config, name)
        if all(spec.get(k) == reference.get(k) for k in set(spec) | set(reference) if k not in free):
            specs[name] = spec
    out = points[points.variant.isin(specs)].copy()
    out["scheduler"] = [specs[v]["scheduler"] for v in out.variant]
    out["steps"] = [int(specs[v]["steps"]) for v in out.variant]
    return out


def steps_section(ctx: ReportContext) -> Section | None:
    if not (ctx.has("summary") and ctx.has("timing")):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = _quality_points(_read(ctx, "summary"), _read(ctx, "distribution"), _read(ctx, "timing"),
                             ctx.config["reference"])
    if points.empty:
        return None
    points = step_points(ctx, points)
    if points.empty:
        return None
    metrics_shown = list(dict.fromkeys(points.metric))
    fig, axes = plt.subplots(1, len(metrics_shown), squeeze=False, figsize=(4.2 * len(metrics_shown), 3.3))
    for ax, metric in zip(axes[0], metrics_shown):
        sub = points[points.metric == metric]
        for scheduler, group in sub.groupby("scheduler"):
            group = group.sort_values("steps")
            ax.plot(group.steps, group.value, "o-", label=scheduler)
        arrow = "↑ better" if sub.higher.iloc[0] else "↓ better"
        ax.set(xlabel="denoising steps", ylabel=f"{sub.label.iloc[0]} ({arrow})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="scheduler", title_fontsize=8)
    fig.tight_layout()
    figure = ctx.figure_path("steps.png")
    io.save_figure(fig, figure, dpi=100)
    plt.close(fig)
    table = points.pivot_table(index=["scheduler", "steps"], columns="label", values="value").reset_index()
    table.columns.name = None
    body = (f'<img class="figure" src="{ctx.rel(figure)}" alt="quality vs denoising steps per scheduler">'
            + table_html(table.round(4), "Quality by scheduler and step count")
            + "<p class='muted'>Variants whose spec equals the reference's except for scheduler and step "
              "count (so dtype, attention and other techniques do not confound the curve); the reference "
              "itself sits at identity (SSIM 1, LPIPS 0). Add variants such as <code>ddim-20: "
              "{scheduler: ddim, steps: 20}</code> to extend a curve.</p>"
            + source_note(ctx.inputs["summary"][0]))
    return Section("Quality vs steps", body, "steps")


def image_grid_section(ctx: ReportContext) -> Section | None:
    if not (ctx.has("shards") and ctx.has("prompts")):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..quality.images import load_rgb, read_manifests

    prompts = pd.read_csv(ctx.inputs["prompts"][0])
    manifests = read_manifests(ctx.inputs["shards"], prompts)
    prompts = prompts.set_index("prompt_id")
    reference = ctx.config["reference"]
    variants = [reference] + sorted(v for v in manifests.variant.unique() if v != reference)
    shown = sorted(manifests.prompt_id.unique())[: ctx.config["report"]["grid_prompts"]]
    fig, axes = plt.subplots(len(shown), len(variants), squeeze=False,
                             figsize=(1.9 * len(variants), 2.0 * len(shown)))
    for r, prompt_id in enumerate(shown):
        for c, variant in enumerate(variants):
            ax = axes[r][c]
            row = manifests[(manifests.variant == variant) & (manifests.prompt_id == prompt_id)
                            & (manifests["sample"] == 0)]
            ax.imshow(load_rgb(row.path.iloc[0]))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(variant, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"prompt {prompt_id}", fontsize=8)
    fig.tight_layout()
    figure = ctx.figure_path("image_grid.png")
    io.save_figure(fig, figure, dpi=100)
    plt.close(fig)
    captions = "".join(
        f"<li><b>{pid}</b>: {html.escape(str(prompts.loc[pid, 'prompt']))}</li>" for pid in shown
    )
    body = (f'<img class="figure" src="{ctx.rel(figure)}" alt="image grid">'
            f"<p>Same prompt and seed in every row, reference first.</p><ul>{captions}</ul>"
            + source_note(ctx.inputs["prompts"][0], "results/images/…/manifest.csv"))
    return Section("Image grid", body, "grid")


def glance(ctx: ReportContext) -> str:
    """The few sentences at the top of the page: fastest, leanest, ties, missing metrics."""
    if not ctx.has("timing"):
        return ""
    reference = ctx.config["reference"]
    eff = efficiency(_read(ctx, "timing"), reference)
    others = eff[eff.variant != reference]
    items = []
    if not others.empty:
        fast = others.loc[others.speedup.idxmax()]
        lean = others.loc[others.memory_reduction.idxmax()]
        items.append(f"Fastest: <b>{html.escape(fast.variant)}</b>, {fast.speedup:.2f}× the reference's speed.")
        items.append(f"Least memory: <b>{html.escape(lean.variant)}</b>, "
                     f"{100 * lean.memory_reduction:.0f}% below the reference.")
    differences = _read(ctx, "differences")
    if differences is not None and not differences.empty:
        ok = differences[differences.verdict.str.startswith(("not distinguishable", "differs"))]
        all_tied = [v for v, g in ok.groupby("variant") if (g.verdict == "not distinguishable from the reference").all()]
        if all_tied:
            items.append("Not distinguishable from the reference on every paired metric: "
                         + ", ".join(f"<b>{html.escape(v)}</b>" for v in all_tied) + ".")
        tested = ", ".join(METRICS[m][0] for m in dict.fromkeys(ok.metric))
        if tested:
            items.append(f"Paired metrics tested: {html.escape(tested)} (95% bootstrap over prompts).")
    missing = set()
    for name, column in (("summary", "status"), ("distribution", "status")):
        frame = _read(ctx, name)
        if frame is not None and column in frame:
            missing |= set(frame.loc[frame[column] != OK, "metric"])
    if missing:
        items.append("Unavailable here (no weights; reasons in the tables): "
                     + ", ".join(METRICS.get(m, (m,))[0] for m in sorted(missing)) + ".")
    return "<ul class='glance'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


# Stage sections live in their own modules (imported here, last: some reuse the helpers above).
from .claims import claims_section  # noqa: E402
from .diffc import diffc_section  # noqa: E402
from .quant import quant_section  # noqa: E402
from .sweep import sweep_section  # noqa: E402

# Page order.
SECTIONS = [
    variants_section, quality_section, distribution_section, pareto_section, steps_section,
    quant_section, accel.benchmark_section, accel.kv_cache_section, sweep_section, diffc_section,
    claims_section, image_grid_section,
]
