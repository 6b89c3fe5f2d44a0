"""The report's sections, in page order. Each reads only the CSVs and images named in the
report rule's inputs; a stage that is not configured simply contributes no section."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .page import ReportContext, Section, source_note, table_html
from .quant import quant_section


def _fmt_interval(mean: float, low: float, high: float, digits: int) -> str:
    if np.isinf(mean):
        return "identical (∞)"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def variant_table(summary: pd.DataFrame, timing: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Seconds per image, peak memory, PSNR and SSIM (with intervals) per variant."""
    rows = []
    for t in timing.itertuples():
        quality = summary[summary.variant == t.variant].set_index("metric")
        row = {
            "variant": t.variant + (" (reference)" if t.variant == reference else ""),
            "images": t.images,
            "s / image (median)": f"{t.seconds_per_image_median:.3f}",
            "peak memory (MB)": f"{t.peak_memory_mb:.0f}",
        }
        for metric, digits in (("psnr", 2), ("ssim", 4)):
            if t.variant == reference:
                row[f"{metric.upper()} [95% CI]"] = "reference"
            elif metric in quality.index:
                q = quality.loc[metric]
                row[f"{metric.upper()} [95% CI]"] = _fmt_interval(q["mean"], q.ci_low, q.ci_high, digits)
        rows.append(row)
    return pd.DataFrame(rows)


def variants_section(ctx: ReportContext) -> Section | None:
    if not (ctx.has("summary") and ctx.has("timing")):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    summary = pd.read_csv(ctx.inputs["summary"][0])
    timing = pd.read_csv(ctx.inputs["timing"][0])
    reference = ctx.config["reference"]
    table = variant_table(summary, timing, reference)

    psnr = summary[summary.metric == "psnr"][["variant", "mean"]].rename(columns={"mean": "psnr"})
    points = timing.merge(psnr, on="variant", how="left")
    points = points[np.isfinite(points.psnr.fillna(np.inf)) & (points.variant != reference)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.barplot(data=timing, x="variant", y="seconds_per_image_median", ax=axes[0], color="#4c72b0")
    axes[0].set(ylabel="seconds per image (median)", xlabel="")
    axes[0].tick_params(axis="x", rotation=30)
    if not points.empty:
        sns.scatterplot(data=points, x="seconds_per_image_median", y="psnr", hue="variant", s=90, ax=axes[1])
        axes[1].set(xlabel="seconds per image (median)", ylabel="PSNR vs reference (dB)",
                    title="speed vs quality")
    fig.tight_layout()
    figure = ctx.figure_path("variants.png")
    fig.savefig(figure, dpi=110)
    plt.close(fig)

    body = (
        table_html(table, "Per variant: speed, memory and quality against the reference")
        + source_note(ctx.inputs["timing"][0], ctx.inputs["summary"][0])
        + f'<img class="figure" src="{ctx.rel(figure)}" alt="speed and quality per variant">'
        + "<p class='muted'>Intervals: percentile bootstrap over images. PSNR of an image identical "
          "to its reference is infinite and shown as “identical”. Peak memory on CPU is the "
          "process's peak resident set; on CUDA the allocator's peak.</p>"
    )
    return Section("Variants", body, "variants")


def image_grid_section(ctx: ReportContext) -> Section | None:
    if not (ctx.has("shards") and ctx.has("prompts")):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..metrics import load_rgb, read_manifests

    manifests = read_manifests(ctx.inputs["shards"])
    prompts = pd.read_csv(ctx.inputs["prompts"][0]).set_index("prompt_id")
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
    fig.savefig(figure, dpi=100)
    plt.close(fig)
    captions = "".join(
        f"<li><b>{pid}</b>: {html.escape(str(prompts.loc[pid, 'prompt']))}</li>" for pid in shown
    )
    body = (f'<img class="figure" src="{ctx.rel(figure)}" alt="image grid">'
            f"<p>Same prompt and seed in every row, reference first.</p><ul>{captions}</ul>"
            + source_note(ctx.inputs["prompts"][0], "results/images/…/manifest.csv"))
    return Section("Image grid", body, "grid")


SECTIONS = [variants_section, image_grid_section]
SECTIONS.append(quant_section)
