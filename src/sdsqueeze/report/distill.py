"""The distillation section: seed 003's table (undistilled samplers at few steps next to the
distilled students) and each student's loss curve.

Rows: DPM-Solver++ variants (undistilled), DDIM at the students' step counts (undistilled), then
every variant that names a student. Quality is against the reference (the teacher's full-step
images, same prompt and seed): PSNR/SSIM with their bootstrap intervals from summary.csv; FID and
IS from distribution.csv where their weights are present; HPSv2 is not computed (reason in the
cell). UNet evaluations per image come from the sampler itself: its timesteps at the variant's
steps, doubled by classifier-free guidance unless the UNet takes the guidance weight as input.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from .. import io
from .page import ReportContext, Section, interval, number, source_note, table_html

HPSV2_UNAVAILABLE = ("unavailable: HPSv2 is not computed by this pipeline; it needs the HPSv2 reward "
                     "model (HPS_v2_compressed.pt, a fine-tuned open_clip ViT-H-14), which is not on this machine")
DDIM_SCHEDULERS = ("ddim", "ddim-trailing")  # the model config's timestep spacing, and trailing
GROUPS = ("teacher (reference)", "DPM-Solver++ (undistilled)", "DDIM (undistilled)", "student")


def _model_folders(ctx: ReportContext) -> dict[str, Path]:
    """Pipeline folder of the model and of each student, from their records."""
    folders = {}
    for record in ctx.inputs.get("distill_models", []):
        data = json.loads(Path(record).read_text())
        folders[data["name"]] = Path(data["path"])
    return folders


def unet_evaluations(folder: Path, scheduler: str, steps: int, guidance: float) -> int:
    """UNet calls per image: the sampler's timesteps at ``steps`` (PNDM's PLMS takes one more than
    asked), times two under classifier-free guidance unless the UNet is w-conditioned."""
    import diffusers

    from ..schedulers import SCHEDULERS

    saved = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    class_name, overrides = SCHEDULERS[scheduler]
    sampler = getattr(diffusers, class_name or saved["_class_name"]).from_config(saved, **overrides)
    sampler.set_timesteps(steps)
    w_conditioned = json.loads((folder / "unet" / "config.json").read_text()).get("time_cond_proj_dim") is not None
    return len(sampler.timesteps) * (2 if guidance > 1 and not w_conditioned else 1)


def table_rows(config: dict) -> list[tuple[str, str, dict]]:
    """(group, variant, spec) of the table's rows, in the seed's order."""
    from ..variants import resolve_variant

    reference = resolve_variant(config, config["reference"])
    specs = {name: resolve_variant(config, name) for name in config["variants"]}
    student_steps = {int(s["steps"]) for s in specs.values() if s.get("student")}

    def plain(spec):  # the reference's settings except sampler and steps
        return not spec.get("student") and all(
            spec.get(k) == reference.get(k) for k in set(spec) | set(reference) if k not in {"scheduler", "steps", "name"})

    rows = [(GROUPS[0], config["reference"], reference)]
    rows += [(GROUPS[1], n, s) for n, s in specs.items() if plain(s) and s["scheduler"] == "dpm++"]
    rows += [(GROUPS[2], n, s) for n, s in specs.items()
             if plain(s) and s["scheduler"] in DDIM_SCHEDULERS and int(s["steps"]) in student_steps]
    rows += [(f"{GROUPS[3]}: {s['student']}", n, s) for n, s in specs.items() if s.get("student")]
    order = {g: i for i, g in enumerate(GROUPS)}
    return sorted(rows, key=lambda r: (order.get(r[0], 3), int(r[2]["steps"]), r[1]))


def _metric(summary: pd.DataFrame, variant: str, metric: str) -> pd.Series | None:
    row = summary[(summary.variant == variant) & (summary.metric == metric)]
    return row.iloc[0] if len(row) else None


def _quality(summary, variant: str, metric: str, digits: int) -> str:
    r = _metric(summary, variant, metric)
    if r is None:
        return "—"
    return interval(r["mean"], r["ci_low"], r["ci_high"], digits) if r.status == "ok" else r.status


def _distribution(distribution, variant: str, metric: str) -> str:
    if distribution is None:
        return "—"
    row = distribution[(distribution.variant == variant) & (distribution.metric == metric)]
    if row.empty:
        return "—"
    r = row.iloc[0]
    return number(r.value, 2) if r.status == "ok" else str(r.status)


def seed_table(ctx: ReportContext, summary, distribution, timing) -> pd.DataFrame:
    folders = _model_folders(ctx)
    model = ctx.config["model"]["name"]
    cost = "CPU s / image" if str(ctx.config.get("device", "cpu")) == "cpu" else "s / image"
    rows = []
    for group, variant, spec in table_rows(ctx.config):
        folder = folders.get(spec.get("student") or model)
        steps = int(spec["steps"])
        evaluations = unet_evaluations(folder, spec["scheduler"], steps, float(spec["guidance"])) if folder else None
        t = timing[timing.variant == variant]
        seconds = (t.cpu_seconds_per_image_median if cost.startswith("CPU") else t.seconds_per_image_median)
        rows.append({
            "Row": group, "Variant": variant, "Steps": steps,
            "UNet evaluations / image": evaluations if evaluations is not None else "—",
            "PSNR (dB) vs teacher [95% CI]": _quality(summary, variant, "psnr", 2),
            "SSIM vs teacher [95% CI]": _quality(summary, variant, "ssim", 4),
            "FD-EffNetLite0 vs teacher": _distribution(distribution, variant, "fd_effnetlite0"),
            "FID vs teacher": _distribution(distribution, variant, "fid_reference"),
            "FID vs COCO": _distribution(distribution, variant, "fid_coco"),
            "IS": _distribution(distribution, variant, "inception_score"),
            "HPSv2": HPSV2_UNAVAILABLE,
            cost: number(float(seconds.iloc[0]), 3) if len(t) else "—",
        })
    return pd.DataFrame(rows)


def separated(summary, better: str, worse: str, metric: str) -> bool | None:
    """True when ``better``'s interval lies wholly above ``worse``'s (None when either is missing)."""
    a, b = _metric(summary, better, metric), _metric(summary, worse, metric)
    if a is None or b is None or a.status != "ok" or b.status != "ok":
        return None
    return bool(a["ci_low"] > b["ci_high"])


def comparisons(config: dict, summary) -> pd.DataFrame:
    """Each step-distilled student against every undistilled DDIM variant at its steps: intervals
    apart or not."""
    rows = table_rows(config)
    out = []
    for _group, variant, spec in rows:
        if not spec.get("student"):
            continue
        baselines = [n for g, n, s in rows if g == GROUPS[2] and int(s["steps"]) == int(spec["steps"])]
        out += [_comparison(summary, variant, baseline) for baseline in baselines]
    return pd.DataFrame(out)


def _comparison(summary, variant: str, baseline: str) -> dict:
    verdict = {}
    for metric in ("psnr", "ssim"):
        apart = separated(summary, variant, baseline, metric)
        verdict[metric] = "—" if apart is None else "higher, intervals apart" if apart else "intervals overlap or lower"
    return {"Student variant": variant, "Baseline": baseline, "PSNR": verdict["psnr"], "SSIM": verdict["ssim"]}


def student_table(summaries: list[dict]) -> pd.DataFrame:
    rows = []
    for s in summaries:
        rows.append({
            "Student": s["student"], "Method": s["description"], "Teacher": s["teacher"],
            "UNet parameters": f"{s['parameters']:,}", "vs teacher": f"{s['parameters'] / s['teacher_parameters']:.0%}",
            "UNet size (MB)": number(s["unet_bytes"] / 1e6, 2), "Iterations": s["iterations"],
            "Training s": number(s["train_seconds"], 1),
            "Loss first → last": f"{number(s['loss_start'], 4)} → {number(s['loss_end'], 4)}",
        })
    return pd.DataFrame(rows)


def loss_figure(ctx: ReportContext, losses: dict[str, pd.DataFrame]) -> Path:
    from .sections import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(losses), squeeze=False, figsize=(4.2 * len(losses), 3.0))
    for ax, (student, log) in zip(axes[0], losses.items()):
        for phase, part in log.groupby("phase", sort=False):
            ax.plot(part.step, part.loss, lw=1, label=phase)
        ax.set(title=student, xlabel="iteration (all phases)", ylabel="training loss")
        ax.grid(alpha=0.3)
        if log.phase.nunique() > 1:
            ax.legend(fontsize=7, title="phase", title_fontsize=7)
    fig.tight_layout()
    path = ctx.figure_path("distill_loss.png")
    io.save_figure(fig, path, dpi=90)
    plt.close(fig)
    return path


def distill_section(ctx: ReportContext) -> Section | None:
    if not (ctx.has("distill") and ctx.has("summary") and ctx.has("timing")):
        return None
    files = [Path(p) for p in ctx.inputs["distill"]]
    summaries = [json.loads(p.read_text()) for p in files if p.name == "summary.json"]
    losses = {p.parent.name: pd.read_csv(p) for p in files if p.name == "loss.csv"}
    summary = pd.read_csv(ctx.inputs["summary"][0])
    distribution = pd.read_csv(ctx.inputs["distribution"][0]) if ctx.has("distribution") else None
    timing = pd.read_csv(ctx.inputs["timing"][0])
    table = seed_table(ctx, summary, distribution, timing)
    hps_note = f"<p class='muted'>HPSv2: {html.escape(HPSV2_UNAVAILABLE)}.</p>"
    table = table.drop(columns="HPSv2")
    unavailable: dict[str, list[str]] = {}  # reason -> the columns it empties: one line per reason
    for column in ("FD-EffNetLite0 vs teacher", "FID vs teacher", "FID vs COCO", "IS"):  # unavailable everywhere: one line, not a column
        statuses = set(table[column])
        if len(statuses) == 1 and next(iter(statuses)).startswith(("unavailable", "—")):
            if next(iter(statuses)) != "—":  # "—": not configured (metrics.distribution): no line either
                unavailable.setdefault(next(iter(statuses)), []).append(column)
            table = table.drop(columns=column)
    for reason, columns in unavailable.items():
        hps_note += f"<p class='muted'>{html.escape(', '.join(columns))}: {html.escape(reason)}.</p>"
    figure = loss_figure(ctx, losses) if losses else None
    checks = comparisons(ctx.config, summary)
    body = (
        "<p>Seed 003's comparison: few-step undistilled samplers against distilled students, each "
        "measured against the teacher's full-step images (the reference variant) on the same prompts "
        "and seeds. Students are trained by rules/distill.smk on prompts disjoint from these.</p>"
        + table_html(table, "Undistilled samplers and distilled students")
        + hps_note
        + (table_html(checks, "Step-distilled students vs undistilled DDIM at the same steps (95% intervals)")
           if not checks.empty else "")
        + table_html(student_table(summaries), "Students: size and training")
        + (f'<img class="figure" src="{ctx.rel(figure)}" alt="training loss per student">' if figure else "")
        + "<p class='muted'>UNet evaluations per image: the sampler's timesteps at the variant's steps, "
          "doubled by classifier-free guidance unless the student takes the guidance weight as input.</p>"
        + source_note(ctx.inputs["summary"][0], *map(str, files))
    )
    return Section("Distillation (seed 003)", body, "distill")

