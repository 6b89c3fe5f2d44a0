"""The quality and cost sections of the page, and the glance box. Rendering only: what they
conclude comes from report/analysis.py; each reads only the CSVs and images named in the report
rule's inputs, and a stage that is not configured contributes no section.

Quality numbers come from results/metrics/{model}/summary.csv (per-image metrics: mean, bootstrap
interval over prompts, status), differences.csv (paired against the reference, with verdicts) and
distribution.csv (FD-EffNetLite0, FID, IS per variant). A metric unavailable for every variant is one line at the
top, not a column; one unavailable for some variants shows a numbered note.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..quality import verdicts
from . import analysis
from .analysis import METRICS, OK
from .page import ReportContext, Section, interval, number, percent, source_note, table_html

INDICATIVE = "indicative (shared CPU)"
NOT_RESOLVED = "not resolved"


class Notes:
    """Numbered footnotes for metrics unavailable for some variants, so cells stay short."""

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


def _on_cpu(ctx: ReportContext) -> bool:
    return str(ctx.config.get("device", "cpu")) == "cpu"


def _spread_bound(ctx: ReportContext) -> float:
    return float(ctx.config.get("report", {}).get("timing_spread_max", analysis.DEFAULT_SPREAD_BOUND))


def _costs(ctx: ReportContext) -> pd.DataFrame:
    return analysis.efficiency(_read(ctx, "timing"), ctx.config["reference"], _on_cpu(ctx), _spread_bound(ctx))


def _missing(ctx: ReportContext) -> dict[str, str]:
    return analysis.unavailable_everywhere(_read(ctx, "summary"), _read(ctx, "distribution"))


def quality_cell(summary, distribution, variant: str, metric: str, notes: Notes) -> str:
    """A metric of one variant as text: value [interval], or 'unavailable [k]'."""
    digits = METRICS[metric][1]
    if distribution is not None and metric in set(distribution.metric):
        row = distribution[(distribution.variant == variant) & (distribution.metric == metric)]
        if row.empty:
            return "—"
        r = row.iloc[0]
        if r.status != OK:
            return notes.cell(r.status)
        if np.isfinite(r.get("ci_low", np.nan)):
            return interval(r.value, r.ci_low, r.ci_high, digits)
        return number(r.value, digits) + (f" ± {number(r['std'], digits)}" if np.isfinite(r["std"]) else "")
    row = summary[(summary.variant == variant) & (summary.metric == metric)] if summary is not None else []
    if len(row) == 0:
        return "—"
    r = row.iloc[0]
    if isinstance(r.get("status", OK), str) and r.status != OK:
        return notes.cell(r.status)
    return interval(r["mean"], r.ci_low, r.ci_high, digits)


# metrics whose reference row compares the reference with itself
ZERO_FOR_REFERENCE = {*verdicts.IDENTITY, "fd_effnetlite0", "fid_reference"}


def speedup_cell(r) -> str:
    """Wall-clock speed-up, shown only where repeats agree (spread below the bound)."""
    if not r.speedup_resolved:
        return NOT_RESOLVED
    return f"{r.speedup:.2f}×"


def technique_table(costs, summary, distribution, differences, reference, on_cpu, missing, notes):
    """OptSD's table, cheapest first: cost, speed-up, memory, quality, verdict."""
    verdict = analysis.variant_verdicts(differences)
    cost_name = "CPU s / image" if on_cpu else "s / image"
    speed_name = f"Wall-clock speed-up, {INDICATIVE}" if on_cpu else "Speed-up (wall clock)"
    rows = []
    for rank, r in enumerate(costs.itertuples(), start=1):
        row = {"Variant": r.variant + (" (reference)" if r.variant == reference else ""), "Cost rank": rank,
               cost_name: number(r.cost_seconds, 3), "Cost vs reference": f"{r.relative_cost:.2f}×",
               speed_name: "1.00×" if r.variant == reference else speedup_cell(r),
               "Memory saved": percent(r.memory_reduction)}
        for metric in ("fd_effnetlite0", "fid_reference", "adherence_overall", "clip_score", "lpips", "ssim"):
            if metric in missing:
                continue
            name = f"{METRICS[metric][0]}{'' if metric.startswith('fid') else ' [95% CI]'}"
            row[name] = "reference" if metric in ZERO_FOR_REFERENCE and r.variant == reference else \
                quality_cell(summary, distribution, r.variant, metric, notes)
        row["Verdict"] = "—" if r.variant == reference else verdict.get(r.variant, "—")
        rows.append(row)
    table = pd.DataFrame(rows).dropna(axis=1, how="all")
    table = drop_uninformative(table, speed_name, reference)  # every speed-up unresolved: no column
    return drop_uninformative(table, "Verdict", reference)


def drop_uninformative(table: pd.DataFrame, column: str, reference: str) -> pd.DataFrame:
    """A column where every non-reference row reads the same word (a verdict, "not resolved")
    tells nothing."""
    if column in table and table.loc[~table.Variant.str.endswith("(reference)"), column].nunique() <= 1:
        return table.drop(columns=column)
    return table


def variants_section(ctx: ReportContext) -> Section | None:
    """OptSD's technique table, computed from timing.csv and the metrics."""
    if not (ctx.has("summary") and ctx.has("timing")):
        return None
    costs, on_cpu = _costs(ctx), _on_cpu(ctx)
    timing = _read(ctx, "timing")
    notes = Notes()
    table = technique_table(costs, _read(ctx, "summary"), _read(ctx, "distribution"), _read(ctx, "differences"),
                            ctx.config["reference"], on_cpu, _missing(ctx), notes)
    kind = ", ".join(sorted(timing.memory_kind.astype(str).unique()))
    bound = _spread_bound(ctx)
    cost_text = ("process CPU seconds per image (median over batches, after an excluded warm-up image): "
                 "other jobs on a shared CPU do not inflate it" if on_cpu else
                 "wall seconds per image (CUDA events, median over batches, after an excluded warm-up)")
    sources = [ctx.inputs[n][0] for n in ("timing", "summary", "distribution", "differences") if ctx.has(n)]
    body = (
        table_html(table, "Techniques ranked by cost, with quality against the reference (OptSD's table)")
        + notes.html()
        + f"<p class='muted'>Cost = {cost_text}; cost vs reference = variant ÷ reference. The wall-clock "
          f"speed-up (reference ÷ variant) is shown only where both spreads over repeats, (max − min) ÷ median "
          f"over batches, are below {bound:.0%}; otherwise “{NOT_RESOLVED}”"
          + (f", and on a CPU shared with other jobs it is {INDICATIVE}" if on_cpu else "") + ". "
          + ("" if any(c.startswith(("Wall-clock", "Speed-up")) for c in table.columns) else
             "No variant's speed-up is resolved in this run, so the column is left out. ")
          + f"Memory saved = 1 − peak ÷ reference peak ({html.escape(kind)}). Intervals: 95% bootstrap over "
          "prompts. Verdicts: paired interval against the practical-equivalence margins "
          "(<code>metrics.equivalence</code>, docs/metrics.md).</p>"
        + source_note(*sources)
    )
    return Section("Techniques", body, "techniques")


def difference_cell(r) -> str:
    digits = METRICS[r.metric][1]
    return f"{interval(r.difference, r.ci_low, r.ci_high, digits)} — {r.verdict}"


def quality_section(ctx: ReportContext) -> Section | None:
    """Every available per-image metric with its interval, and the paired verdicts per variant."""
    summary = _read(ctx, "summary")
    if summary is None:
        return None
    notes, missing = Notes(), _missing(ctx)
    names = [m for m in METRICS if m in set(summary.metric) and m not in missing]
    reference = ctx.config["reference"]
    rows = [{"Variant": v + (" (reference)" if v == reference else ""),
             **{f"{METRICS[m][0]} [95% CI]": quality_cell(summary, None, v, m, notes) for m in names}}
            for v in sorted(summary.variant.unique())]
    body = table_html(pd.DataFrame(rows), "Per-image metrics: mean [95% bootstrap interval over prompts]")
    body += paired_table(_read(ctx, "differences"), missing, notes)
    body += notes.html() + source_note(ctx.inputs["summary"][0],
                                       *([ctx.inputs["differences"][0]] if ctx.has("differences") else []))
    return Section("Quality with intervals", body, "quality")


def paired_table(differences: pd.DataFrame | None, missing: dict, notes: Notes) -> str:
    """One row per variant, one column per paired metric: difference [95% CI] — verdict."""
    if differences is None or differences.empty:
        return ""
    shown = differences[~differences.metric.isin(missing) & ~differences.metric.isin(analysis.ADHERENCE_ATTRIBUTES)]
    if shown.empty:
        return ""
    rows = {}
    for r in shown.itertuples():
        name = f"{METRICS[r.metric][0]}: {'value' if r.metric == 'psnr' else 'Δ'} [95% CI] — verdict"
        rows.setdefault(r.variant, {"Variant": r.variant})[name] = (
            difference_cell(r) if r.verdict in verdicts.VERDICTS else notes.cell(r.verdict))
    bounds = "; ".join(
        f"{METRICS[m][0]} {'≥ ' + number(b, 0) + ' dB' if m == 'psnr' else '|Δ| ≤ ' + number(b, 3)}"
        for m, b in shown.drop_duplicates("metric").set_index("metric").bound.items())
    return (table_html(pd.DataFrame(list(rows.values())), "Paired against the reference, with verdicts")
            + f"<p class='muted'>Margins: {html.escape(bounds)}. <b>equivalent</b>: the whole interval within "
              "the margin (PSNR: at or above the threshold); <b>worse</b>/<b>better</b>: wholly beyond it; "
              "<b>inconclusive</b>: it straddles the margin. SSIM and LPIPS compare each image with its "
              "reference image (Δ = value − identity); CLIP score and prompt adherence are paired image by "
              "image; PSNR is the value itself (identical images capped at 100 dB).</p>")


def percent_interval(mean: float, low: float, high: float) -> str:
    return f"{percent(mean)} [{percent(low)}, {percent(high)}]"


def points(difference: float) -> str:
    """A difference of shares in percentage points, never "-0"."""
    return f"{round(100 * difference) + 0:+d}"


def adherence_cell(summary: pd.DataFrame, variant: str, metric: str, notes: Notes) -> str:
    row = summary[(summary.variant == variant) & (summary.metric == metric)]
    if row.empty:
        return "—"
    r = row.iloc[0]
    if r.status != OK:
        return notes.cell(r.status)
    return percent_interval(r["mean"], r.ci_low, r.ci_high)


def adherence_verdict_cell(differences: pd.DataFrame | None, variant: str, notes: Notes) -> str:
    """Δ overall in points [95% CI] — verdict, then the attributes judged worse."""
    if differences is None:
        return "—"
    rows = differences[differences.variant == variant].set_index("metric")
    if "adherence_overall" not in rows.index:
        return "—"
    r = rows.loc["adherence_overall"]
    if r.verdict not in verdicts.VERDICTS:
        return notes.cell(r.verdict)
    text = f"{points(r.difference)} [{points(r.ci_low)}, {points(r.ci_high)}] — {r.verdict}"
    worse = [name for metric, name in analysis.ADHERENCE_ATTRIBUTES.items()
             if metric in rows.index and rows.loc[metric, "verdict"] == verdicts.WORSE]
    return text + (f"; worse in {', '.join(worse)}" if worse else "")


def adherence_section(ctx: ReportContext) -> Section | None:
    """Per variant: the share of images that show what their prompt states (shapes domain), overall
    and per attribute, and the paired difference to the reference with its verdict."""
    summary = _read(ctx, "summary")
    if summary is None or "adherence_overall" not in set(summary.metric) or "adherence_overall" in _missing(ctx):
        return None
    reference, differences, notes = ctx.config["reference"], _read(ctx, "differences"), Notes()
    metrics = ["adherence_overall", *analysis.ADHERENCE_ATTRIBUTES]
    order = [reference] + sorted(v for v in summary.variant.unique() if v != reference)
    rows = []
    for variant in order:
        row = {"Variant": variant + (" (reference)" if variant == reference else "")}
        for metric in metrics:
            name = "Overall" if metric == "adherence_overall" else analysis.ADHERENCE_ATTRIBUTES[metric].capitalize()
            row[f"{name} [95% CI]"] = adherence_cell(summary, variant, metric, notes)
        row["Δ overall, points [95% CI] — verdict"] = "—" if variant == reference else \
            adherence_verdict_cell(differences, variant, notes)
        rows.append(row)
    overall = summary[summary.metric == "adherence_overall"]
    margin = differences[differences.metric == "adherence_overall"].bound.iloc[0] \
        if differences is not None and (differences.metric == "adherence_overall").any() else np.nan
    body = (
        table_html(pd.DataFrame(rows), "Prompt adherence: share of images showing what the prompt states")
        + notes.html()
        + "<p class='muted'>A deterministic detector without learned weights (colour segmentation, shape by "
          "template overlap, colour by hue, position by the group's centre; docs/shapes.md, which also gives its "
          "accuracy on clean and blurred renders) checks each image against the attributes its prompt states: "
          "the shape and colour of every object found, their count, and where the group sits. Overall = every "
          f"stated attribute right. Images per variant: {int(overall.n.max())} from "
          f"{int(overall.n_prompts.max())} prompts; intervals: 95% bootstrap over prompts. Δ = variant − "
          "reference, paired image by image (same prompt and seed); verdict against the margin of ±"
          f"{number(100 * margin, 0)} points (<code>metrics.equivalence.adherence</code>).</p>"
        + source_note(ctx.inputs["summary"][0], *([ctx.inputs["differences"][0]] if ctx.has("differences") else []))
    )
    return Section("Prompt adherence", body, "adherence")


def distribution_section(ctx: ReportContext) -> Section | None:
    distribution = _read(ctx, "distribution")
    if distribution is None:
        return None
    missing = _missing(ctx)
    shown = [m for m in analysis.DISTRIBUTION_METRICS if m in set(distribution.metric) and m not in missing]
    if not shown:
        return None  # the glance box's one line says why
    notes = Notes()
    rows = []
    for v in sorted(distribution.variant.unique()):
        row = {"Variant": v, "Images": int(distribution[distribution.variant == v].n_images.iloc[0])}
        for m in shown:
            row[METRICS[m][0]] = quality_cell(None, distribution, v, m, notes)
        rows.append(row)
    splits = ctx.config.get("metrics", {}).get("is_splits", 10)
    body = (table_html(pd.DataFrame(rows), "Distribution metrics, one value per variant")
            + notes.html()
            + "<p class='muted'>FD-EffNetLite0 (not FID): Fréchet distance to the reference variant's images in "
              "EfficientNet-Lite0's 1280-d ImageNet features, with a bootstrap interval over prompts; it is biased "
              "upwards at few images, so compare it only between equal image counts. "
              "FID: pytorch-fid's Inception pool3 features, Fréchet distance to the reference "
              "variant's images and, when <code>metrics.coco_images</code> is set, to the prompts' COCO "
              f"photographs. IS: {splits} in-order splits, mean ± std. No bootstrap interval for FID: its "
              "small-sample bias dominates at these sizes, so compare FID only between equal image counts. "
              "See docs/metrics.md.</p>"
            + source_note(ctx.inputs["distribution"][0]))
    return Section("Distribution metrics: FD-EffNetLite0, FID, Inception Score", body, "distribution")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label_points(ax, xs, ys, names, near_px: float = 12) -> None:
    """Variant names beside their points, moved apart so none overlaps another (adjustText);
    points closer than ``near_px`` on screen share one label, listed top to bottom."""
    from adjustText import adjust_text

    ax.autoscale_view()
    screen = ax.transData.transform(np.column_stack([xs, ys]))
    groups: list[list[int]] = []
    for i, point in enumerate(screen):
        home = next((g for g in groups if np.hypot(*(screen[g[0]] - point)) < near_px), None)
        home.append(i) if home is not None else groups.append([i])
    xs, ys, names = list(xs), list(ys), list(names)
    texts = [ax.text(xs[g[0]], ys[g[0]], "\n".join(sorted(names[i] for i in g)), fontsize=7) for g in groups]
    # iter_lim, not time_lim: the same inputs give the same figure on any machine
    adjust_text(texts, x=xs, y=ys, ax=ax, expand=(1.3, 1.8), force_text=(0.8, 1.2), iter_lim=3000,
                arrowprops={"arrowstyle": "-", "color": "#999", "lw": 0.5})


def pareto_section(ctx: ReportContext) -> Section | None:
    if not (ctx.has("summary") and ctx.has("timing")):
        return None
    points = analysis.quality_points(_read(ctx, "summary"), _read(ctx, "distribution"), _costs(ctx))
    if points.empty:
        return None
    plt = _pyplot()
    metrics_shown = list(dict.fromkeys(points.metric))
    fig, axes = plt.subplots(len(metrics_shown), 2, squeeze=False, figsize=(11, 4.2 * len(metrics_shown)))
    cost_label = "CPU seconds per image (← cheaper)" if _on_cpu(ctx) else "seconds per image (← faster)"
    for row, metric in enumerate(metrics_shown):
        sub = points[points.metric == metric]
        higher = bool(sub.higher.iloc[0])
        for col, (cost, xlabel) in enumerate((("seconds", cost_label), ("memory", "peak memory, MB (← leaner)"))):
            ax = axes[row][col]
            ax.scatter(sub[cost], sub.value, color="#2f6fd6", s=30, zorder=3)
            front = analysis.pareto_front(sub, cost, higher)
            ax.plot(front[cost], front.value, "--o", color="#888", mfc="none", ms=11, zorder=2, label="Pareto front")
            ax.set(xlabel=xlabel, ylabel=f"{sub.label.iloc[0]} ({'↑' if higher else '↓'} better)")
            ax.grid(alpha=0.3)
            ax.margins(x=0.12, y=0.2)
            _label_points(ax, sub[cost], sub.value, sub.variant)
    fig.tight_layout()
    figure = ctx.figure_path("variants.png")  # the report rule declares this name
    io.save_figure(fig, figure, dpi=90)
    plt.close(fig)
    body = (f'<img class="figure" src="{ctx.rel(figure)}" alt="Pareto plots: cost and memory vs quality">'
            "<p class='muted'>One row per quality metric with values; left cost, right memory; arrows give the "
            "better direction. The dashed line (open circles) joins the variants no other variant beats in both: "
            "the Pareto front.</p>"
            + source_note(ctx.inputs["timing"][0], ctx.inputs["summary"][0]))
    return Section("Pareto: cost and memory vs quality", body, "pareto")


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
    points = analysis.quality_points(_read(ctx, "summary"), _read(ctx, "distribution"), _costs(ctx))
    points = step_points(ctx, points) if not points.empty else points
    if points.empty:
        return None
    plt = _pyplot()
    metrics_shown = list(dict.fromkeys(points.metric))
    fig, axes = plt.subplots(1, len(metrics_shown), squeeze=False, figsize=(4.2 * len(metrics_shown), 3.3))
    for ax, metric in zip(axes[0], metrics_shown):
        sub = points[points.metric == metric]
        for scheduler, group in sub.groupby("scheduler"):
            group = group.sort_values("steps")
            ax.plot(group.steps, group.value, "o-", label=scheduler)
        ax.set(xlabel="denoising steps (→ more work)",
               ylabel=f"{sub.label.iloc[0]} ({'↑' if sub.higher.iloc[0] else '↓'} better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="scheduler", title_fontsize=8)
    fig.tight_layout()
    figure = ctx.figure_path("steps.png")
    io.save_figure(fig, figure, dpi=90)
    plt.close(fig)
    table = points.pivot_table(index=["scheduler", "steps"], columns="label", values="value").reset_index()
    table.columns.name = None
    body = (f'<img class="figure" src="{ctx.rel(figure)}" alt="quality vs denoising steps per scheduler">'
            + table_html(table.round(4), "Quality by scheduler and step count")
            + "<p class='muted'>Variants whose spec equals the reference's except scheduler and step count; "
              "the reference itself sits at identity (SSIM 1, LPIPS 0).</p>"
            + source_note(ctx.inputs["summary"][0]))
    return Section("Quality vs steps", body, "steps")


def image_grid_section(ctx: ReportContext) -> Section | None:
    """Per variant, thumbnails of the first prompts, each linking to the full-size PNG; the same
    grid as one figure for `snakemake --report`."""
    if not (ctx.has("shards") and ctx.has("prompts")):
        return None
    from ..quality.images import read_manifests

    prompts = pd.read_csv(ctx.inputs["prompts"][0])
    manifests = read_manifests(ctx.inputs["shards"], prompts)
    manifests = manifests[manifests["sample"] == 0]
    prompts = prompts.set_index("prompt_id")
    reference = ctx.config["reference"]
    variants = [reference] + sorted(v for v in manifests.variant.unique() if v != reference)
    shown = sorted(manifests.prompt_id.unique())[: ctx.config["report"]["grid_prompts"]]
    paths = manifests.set_index(["variant", "prompt_id"]).path
    cards = []
    for variant in variants:
        thumbs = "".join(
            f'<a href="{html.escape(ctx.rel(paths[(variant, p)]))}"><img src="{html.escape(ctx.rel(paths[(variant, p)]))}" '
            f'alt="{html.escape(variant)}, prompt {p}" title="prompt {p}"></a>' for p in shown)
        cards.append(f"<figure class='variant'><figcaption>{html.escape(variant)}</figcaption>{thumbs}</figure>")
    figure = grid_figure(ctx, variants, shown, paths)
    if "prompt" in prompts:
        captions = "".join(f"<li><b>{pid}</b>: {html.escape(str(prompts.loc[pid, 'prompt']))}</li>" for pid in shown)
        listing = (f"<p>Prompts, left to right (same seed in every variant; click a thumbnail for full size): "
                   f"<ol class='muted'>{captions}</ol></p>")
    else:  # an unconditional model's sample list: ids and seeds
        seeds = ", ".join(f"{pid} (seed {int(prompts.loc[pid, 'seed'])})" for pid in shown)
        listing = (f"<p>Samples, left to right (same seed in every variant; click a thumbnail for full size): "
                   f"{seeds}.</p>")
    body = (f"<div class='grid'>{''.join(cards)}</div>" + listing
            + f'<p class="muted">All in one figure: <a href="{ctx.rel(figure)}">{html.escape(figure.name)}</a>.</p>'
            + source_note(ctx.inputs["prompts"][0], "results/images/…/manifest.csv"))
    return Section("Image grid", body, "grid")


def grid_figure(ctx: ReportContext, variants, shown, paths):
    """Variants as rows (names readable at any count), prompts as columns."""
    from ..quality.images import load_rgb

    plt = _pyplot()
    fig, axes = plt.subplots(len(variants), len(shown), squeeze=False,
                             figsize=(1.6 * len(shown) + 1.8, 1.6 * len(variants)))
    for r, variant in enumerate(variants):
        for c, prompt_id in enumerate(shown):
            ax = axes[r][c]
            ax.imshow(load_rgb(paths[(variant, prompt_id)]))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"prompt {prompt_id}", fontsize=10)
            if c == 0:
                ax.set_ylabel(variant, fontsize=10, rotation=0, ha="right", va="center")
    fig.tight_layout()
    figure = ctx.figure_path("image_grid.png")
    io.save_figure(fig, figure, dpi=90)
    plt.close(fig)
    return figure


SEEDED_BANNER = ("SEEDED WEIGHTS: this run's model is SD 1.5's architecture with untrained, seeded weights "
                 "(model.source sd15-seeded). Its images are meaningless noise patterns and its quality "
                 "metrics measure only how far a technique moves the output; speed and memory are SD 1.5's.")


def where_it_ran(ctx: ReportContext) -> str:
    """The top of the page: a banner when the weights are seeded, and the devices the generation
    jobs ran on as their provenance records them (GPU name and UUID, CUDA, torch)."""
    parts = []
    if str(ctx.config["model"]["source"]) == "sd15-seeded":
        parts.append(f"<p class='banner'>{html.escape(SEEDED_BANNER)}</p>")
    devices = set()
    for shard in ctx.inputs.get("shards", []):
        path = Path(shard) / "provenance.json"
        record = json.loads(path.read_text()) if path.is_file() else {}
        device = record.get("device", {})
        torch_version = record.get("packages", {}).get("torch", "?")
        if "gpu" in device:
            devices.add(f"{device['gpu']} (UUID {device.get('gpu_uuid', '?')}), CUDA {device.get('cuda', '?')}, "
                        f"torch {torch_version}")
        elif device:
            devices.add(f"{device.get('device', 'cpu')} ({device.get('cpu', '?')}), torch {torch_version}")
    if devices:
        parts.append("<p class='muted'>Generation ran on: " + "; ".join(html.escape(d) for d in sorted(devices))
                     + " (each image shard's provenance.json).</p>")
    return "".join(parts)


def glance(ctx: ReportContext) -> str:
    """The top of the page: the best trade-offs (cost and quality cost of one run), the variants
    equivalent to the reference, and metrics unavailable everywhere in one line."""
    if not ctx.has("timing"):
        return ""
    reference, on_cpu = ctx.config["reference"], _on_cpu(ctx)
    costs, differences = _costs(ctx), _read(ctx, "differences")
    items = [tradeoff_item(r, on_cpu) for r in analysis.tradeoffs(costs, differences, reference).itertuples()]
    same = analysis.all_equivalent(differences)
    if same:
        items.append("Equivalent to the reference in every paired metric (within the margins): "
                     + ", ".join(f"<b>{html.escape(v)}</b>" for v in same) + ".")
    adherence = adherence_glance(_read(ctx, "summary"), differences, reference, _missing(ctx))
    if adherence:
        items.append(adherence)
    missing = _missing(ctx)
    if missing:
        items.append(f"<span class='unavailable'>{html.escape(analysis.unavailable_line(missing))}</span>")
    if on_cpu:
        items.append(f"Cost is CPU time per image; wall-clock speed-ups are {INDICATIVE}.")
    model = html.escape(str(ctx.config["model"]["name"]))
    head = f"<p class='caption'>At a glance (this run, model <code>{model}</code>)</p>"
    return head + "<ul class='glance'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


def adherence_glance(summary, differences, reference: str, missing: dict) -> str:
    """The reference's overall prompt adherence and the variants judged worse in it."""
    if summary is None or "adherence_overall" in missing:
        return ""
    row = summary[(summary.variant == reference) & (summary.metric == "adherence_overall")]
    if row.empty or row.iloc[0].status != OK:
        return ""
    r = row.iloc[0]
    text = (f"Prompt adherence of the reference (share of images showing every stated attribute): "
            f"{percent_interval(r['mean'], r.ci_low, r.ci_high)}")
    worse = [] if differences is None else differences[(differences.metric == "adherence_overall")
                                                       & (differences.verdict == verdicts.WORSE)]
    if len(worse):
        text += "; worse than the reference: " + ", ".join(
            f"<b>{html.escape(w.variant)}</b> ({points(w.difference)} points)" for w in worse.itertuples())
    return text + "."


def tradeoff_item(r, on_cpu: bool) -> str:
    label_, digits, _ = METRICS[r.metric]
    what = "CPU time" if on_cpu else "time"
    change = "Δ " if r.metric != "psnr" else ""
    return (f"<b>{html.escape(r.variant)}</b>: {r.relative_cost:.2f}× the reference's {what} per image; "
            f"{label_} {change}{interval(r.difference, r.ci_low, r.ci_high, digits)} — {html.escape(r.verdict)}.")
