"""Report section of the latent-compression sweep: fitted surface, measured means, rate vs quality,
and the denoiser evaluations the shared trajectories saved."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pandas as pd

from .. import io
from ..sweep.fit import PARAMS
from .page import ReportContext, Section, source_note, table_html


def _named(ctx: ReportContext, suffix: str) -> str:
    return next(p for p in ctx.inputs["sweep"] if p.endswith(suffix))


def _copy_figure(ctx: ReportContext, source: str, name: str) -> str:
    target = ctx.figure_path(name)
    shutil.copyfile(source, target)
    return f'<img class="figure" src="{ctx.rel(target)}" alt="{html.escape(name)}">'


def _signed(value: float) -> str:
    """'+ 4.5' or '− 4.5': a formula reads better than '+ -4.5'."""
    return f"{'−' if value < 0 else '+'} {abs(value):.4g}"


def formula_html(fit: dict) -> str:
    p = {name: entry["value"] for name, entry in fit["params"].items()}
    norm = fit["normalisation"]
    return (f"<pre>Q(s', r') = {p['L']:.4g} / (1 + exp({p['K1']:.4g} (s' {_signed(-p['B1'])}) "
            f"{_signed(p['K2'])} (r' {_signed(-p['B2'])}))) {_signed(p['D'])}\n"
            f"s' = (step − {norm['step'][0]:g}) / {norm['step'][1] - norm['step'][0]:g},  "
            f"r' = ({norm['level_name']} − {norm['level'][0]:g}) / "
            f"{norm['level'][1] - norm['level'][0]:g},  Q = ln(score + 1e-6)</pre>")


def parameter_table(fit: dict) -> pd.DataFrame:
    intervals = fit.get("bootstrap", {}).get("intervals", {})

    def interval(name):
        low_high = intervals.get(name)
        return f"[{low_high[0]:.4g}, {low_high[1]:.4g}]" if low_high else "not available"

    return pd.DataFrame([{"parameter": k, "value": f"{v['value']:.4g}",
                          "95% interval (bootstrap over seeds)": interval(k),
                          "bounds (the seed's)": f"[{v['lower']:g}, {v['upper']:g}]",
                          "on a bound": "yes" if v["on_bound"] else "no"}
                         for k, v in ((k, fit["params"][k]) for k in PARAMS)])


def identification_html(fit: dict) -> str:
    """Whether the surface is a result: identified (drawn) or the reasons it is not."""
    boot = fit.get("bootstrap", {})
    boot_note = (f"Intervals: {boot.get('resamples', 0)} resamples of {boot.get('n_seeds')} seeds"
                 + (f" ({html.escape(boot['note'])})" if boot.get("note") else "") + ".")
    if fit.get("identified", True):
        return (f"<p><b>Surface identified</b>: no parameter on a bound, R² ≥ {fit.get('min_r2', 0):g}. "
                f"{boot_note}</p>")
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in fit.get("not_identified_because", []))
    zero = fit.get("n_score_zero", 0)
    zero_note = (f"<p class='muted'>{zero} run(s) score exactly 0 after min-max normalisation "
                 "(Q = ln 1e-6 = −13.8), out of reach of the seed's L ≤ 2.</p>" if zero else "")
    return (f"<p><b>Surface not identified, so not drawn</b> (the figure shows the measured means "
            f"only):</p><ul>{reasons}</ul>{zero_note}<p>{boot_note}</p>")


def rate_quality_figure(ctx: ReportContext, runs: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = runs.groupby(["step", "level"], as_index=False)[
        ["bits_ans", "bits_zlib", "psnr_rgb_db", "ssim_rgb"]].mean()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for step, group in means.groupby("step"):
        group = group.sort_values("bits_ans")
        axes[0].plot(group.bits_ans, group.psnr_rgb_db, marker="o", label=f"step {step}")
        axes[1].plot(group.bits_ans, group.ssim_rgb, marker="o", label=f"step {step}")
    axes[0].set(xlabel="measured bits per latent element (ANS, side info included)",
                ylabel="PSNR RGB (dB)")
    axes[1].set(xlabel="measured bits per latent element (ANS, side info included)", ylabel="SSIM RGB")
    axes[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    target = ctx.figure_path("sweep_rate_quality.png")
    io.save_figure(fig, target, dpi=100)
    plt.close(fig)
    return f'<img class="figure" src="{ctx.rel(target)}" alt="rate vs quality">'


def sweep_section(ctx: ReportContext) -> Section | None:
    if not ctx.has("sweep"):
        return None
    csv, fit_json, evals_json = (_named(ctx, "sweep.csv"), _named(ctx, "fit.json"),
                                 _named(ctx, "evaluations.json"))
    runs = pd.read_csv(csv)
    fit = json.loads(Path(fit_json).read_text())
    evals = json.loads(Path(evals_json).read_text())
    level = fit["normalisation"]["level_name"]
    params = parameter_table(fit)
    rates = (runs.groupby(["step", "level"], as_index=False)
             .agg(runs=("file", "size"), bits_ans=("bits_ans", "mean"), bits_zlib=("bits_zlib", "mean"),
                  entropy_bits=("entropy_bits", "mean"), psnr_gray_db=("psnr_gray_db", "mean"),
                  ssim_gray=("ssim_gray", "mean"), psnr_rgb_db=("psnr_rgb_db", "mean"),
                  ssim_rgb=("ssim_rgb", "mean"))
             .rename(columns={"level": level}).round(3))
    lpips_values = runs["lpips_alex"].astype(str)
    lpips_note = (html.escape(lpips_values.iloc[0]) if lpips_values.str.startswith("unavailable").all()
                  else f"mean {pd.to_numeric(runs.lpips_alex, errors='coerce').mean():.4f}")
    body = (
        f"<p>{evals['runs']} compressed runs ({runs['seed'].nunique()} seeds, "
        f"{runs.prompt_id.nunique()} prompt(s), operator <code>{html.escape(runs.operator.iloc[0])}</code>), "
        f"each scored against the uncompressed image of its prompt and seed. Fit on the "
        f"<b>{fit['convention']}</b> convention, {fit['fit_on']}; R² = <b>{fit['r2']:.4f}</b> "
        f"over {fit['n_runs']} runs ({fit['n_psnr_capped']} identical images capped at "
        f"{fit['psnr_cap_db']:g} dB).</p>"
        + identification_html(fit)
        + ("" if fit.get("identified", True) else
           "<p class='muted'>The best fit inside the seed's bounds, shown for diagnosis, not as a result:</p>")
        + formula_html(fit)
        + table_html(params, "Fitted parameters: the seed's bounds; 95% intervals from a bootstrap over seeds")
        + _copy_figure(ctx, _named(ctx, "surface.png"), "sweep_surface.png")
        + _copy_figure(ctx, _named(ctx, "heatmap.png"), "sweep_heatmap.png")
        + _copy_figure(ctx, _named(ctx, "residuals.png"), "sweep_residuals.png")
        + "<p>Rate vs quality: the ratio axis backed by the measured size of the compressed latent.</p>"
        + rate_quality_figure(ctx, runs)
        + table_html(rates, "Means per (step, level): measured bits per latent element and quality")
        + f"<p>LPIPS (AlexNet): {lpips_note}.</p>"
        + f"<p>Denoiser evaluations: <b>{evals['shared']:,}</b> on shared trajectories vs "
          f"<b>{evals['naive']:,}</b> naive (every run from noise, {evals['evaluations_per_full_run']} "
          f"per run) = <b>{evals['shared_over_naive']:.3f}</b> × naive.</p>"
        + source_note(csv, fit_json, evals_json)
    )
    return Section("Latent-compression sweep", body, "sweep")
