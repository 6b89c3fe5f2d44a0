"""Report section: DiffC rate-distortion curves (bits per pixel against PSNR, SSIM, LPIPS)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .. import io
from .page import ReportContext, Section, source_note, table_html

QUALITY = [("psnr", "PSNR (dB) ↑"), ("ssim", "SSIM ↑"), ("lpips", "LPIPS ↓"),
           ("latent_snr_db", "latent SNR (dB) ↑")]


def rd_summary(rd: pd.DataFrame) -> pd.DataFrame:
    """Mean over images per model and rate point; the VAE round trip (encode→decode) as its own row."""
    frame = rd.copy()
    frame["lpips"] = pd.to_numeric(frame["lpips"], errors="coerce")
    frame["point"] = np.where(frame.method == "vae", "VAE round trip", "t=" + frame.recon_timestep.astype(str))
    table = frame.groupby(["model", "method", "recon_timestep", "point"], as_index=False).agg(
        images=("image", "nunique"), bpp=("bpp", "mean"), psnr=("psnr", "mean"), ssim=("ssim", "mean"),
        lpips=("lpips", "mean"), latent_snr_db=("latent_snr_db", "mean"),
        decode_s=("decode_seconds", "mean"), encode_s_per_image=("encode_seconds_all_rate_points", "mean"))
    if "chunk_kl_excess_bits" in frame:  # worst chunk KL minus its budget over the files (<= 0: within)
        worst = frame.groupby(["model", "method", "recon_timestep"]).chunk_kl_excess_bits.max()
        table = table.join(worst.rename("worst_chunk_excess_bits"), on=["model", "method", "recon_timestep"])
    table = table.sort_values(["model", "method", "recon_timestep"], ascending=[True, True, False])
    return table.drop(columns=["method", "recon_timestep"]).round(4)


def monotonicity(rd: pd.DataFrame) -> list[str]:
    """Per model: does the mean of each quality measure rise with rate? Stated, not assumed."""
    lines = []
    coded = rd[rd.method == "diffc"]
    for model, group in coded.groupby("model"):
        mean = group.groupby("recon_timestep")[["bpp", "psnr", "latent_snr_db"]].mean().sort_values("bpp")
        verdicts = [f"{key}: {'rises' if mean[key].is_monotonic_increasing else 'does NOT rise monotonically'}"
                    for key in ("psnr", "latent_snr_db")]
        lines.append(f"{model}, mean over images as bits per pixel grow — " + "; ".join(verdicts) + ".")
    return lines


def draw_curves(rd: pd.DataFrame, path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = rd.copy()
    frame["lpips"] = pd.to_numeric(frame["lpips"], errors="coerce")
    shown = [(k, label) for k, label in QUALITY if frame.loc[frame.method == "diffc", k].notna().any()]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.6), squeeze=False)
    coded = frame[frame.method == "diffc"].replace([np.inf, -np.inf], np.nan)
    for ax, (key, label) in zip(axes[0], shown):
        for model, group in coded.groupby("model"):
            mean = group.groupby("recon_timestep").agg(bpp=("bpp", "mean"), q=(key, "mean")).sort_values("bpp")
            line = ax.plot(mean.bpp, mean.q, marker="o", label=f"DiffC {model}")[0]
            for _, per_image in group.groupby("image"):
                per_image = per_image.sort_values("bpp")
                ax.plot(per_image.bpp, per_image[key], color=line.get_color(), alpha=0.25, lw=0.8)
            round_trip = frame[(frame.method == "vae") & (frame.model == model)][key]
            if round_trip.notna().any() and np.isfinite(round_trip).all():
                ax.axhline(round_trip.mean(), color=line.get_color(), ls="--", lw=1, label=f"VAE round trip {model}")
        ax.set(xlabel="bits per pixel, file size (→ more bits)", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    io.save_figure(fig, path, dpi=110)
    plt.close(fig)
    return [k for k, _ in shown]


def diffc_section(ctx: ReportContext) -> Section | None:
    if not ctx.has("diffc"):
        return None
    rd = pd.concat([pd.read_csv(p) for p in ctx.inputs["diffc"]], ignore_index=True)
    figure = ctx.figure_path("diffc_rd.png")
    draw_curves(rd, figure)
    coded = rd[rd.method == "diffc"]
    lpips_notes = sorted({str(v) for v in rd.lpips if isinstance(v, str) and v.startswith("unavailable")})
    redecoded = coded.redecode_identical.dropna()
    notes = [
        f"{len(coded)} files from {coded.image.nunique()} images; bits per pixel = file size × 8 / pixels "
        "(header, KL schedule and checksum included). Thin lines: single images; dashed: the VAE round "
        "trip (encode→decode, no coding). It is not a ceiling: DiffC's denoised reconstruction can land "
        "nearer the photograph than the VAE's own decode of its latent.",
        "Decoded twice, identical pixels: " + (f"{int(redecoded.astype(bool).sum())} of {len(redecoded)} files"
                                               if len(redecoded) else "not checked (diffc.redecode off)"),
        "Latent SNR compares the decoded latent with the image's VAE latent, before the VAE decoder: it "
        "shows what the coder delivers even where the decoder (e.g. the tiny model's small VAE, "
        "trained mostly on flat shapes) caps pixel quality.",
    ]
    notes += monotonicity(rd)
    if lpips_notes:
        notes.append("LPIPS " + "; ".join(lpips_notes))
    body = (f'<img class="figure" src="{ctx.rel(figure)}" alt="DiffC rate-distortion curves">'
            + table_html(rd_summary(rd), "Mean over images per rate point")
            + "".join(f"<p class='muted'>{html.escape(n)}</p>" for n in notes)
            + source_note(*ctx.inputs["diffc"]))
    return Section("DiffC compression", body, "diffc")
