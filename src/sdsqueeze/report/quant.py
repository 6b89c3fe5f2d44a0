"""Report section: Q-Diffusion's table — calibration × bits -> quality against the reference, and size."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import analysis
from .page import ReportContext, Section, source_note, table_html

CALIBRATION_LABELS = {"none": "W/O", "raw_data": "W (raw data)", "noise_data": "W (noise)",
                      "timestep_aware": "W (timestep-aware)"}
METRIC_DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "fid": 2, "is": 2, "clip": 3}


def _cell(row: pd.Series, digits: int) -> str:
    if np.isinf(row["mean"]):
        return "identical (∞)"
    text = f"{row['mean']:.{digits}f}"
    if np.isfinite(row.get("ci_low", np.nan)) and row["ci_low"] != row["ci_high"]:
        text += f" [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"
    return text


def quant_table(variants: dict, reference: str, summary: pd.DataFrame, sizes: pd.DataFrame) -> pd.DataFrame:
    """Baseline first, then every ptq variant ordered by bits (high first) and calibration."""
    metrics = list(dict.fromkeys(summary.metric)) if not summary.empty else []
    sizes = sizes.set_index("variant")
    entries = [(reference, None)] + [(name, spec["ptq"]) for name, spec in variants.items()
                                     if (spec or {}).get("ptq")]
    rows = []
    for name, ptq in entries:
        size = sizes.loc[name] if name in sizes.index else None
        calibration = (ptq or {}).get("calibration", "none")
        row = {
            "Calib": "Baseline" if ptq is None else CALIBRATION_LABELS[calibration],
            "Bits (W/A)": (f"W{int(size.weight_bits)}A{int(size.act_bits)}" if ptq is None and size is not None
                           else f"W{ptq['weight_bits']}A{ptq['act_bits']}" if ptq else ""),
            "variant": name,
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
        rows.append((0 if ptq is None else 1, -(ptq or {}).get("weight_bits", 99),
                     -(ptq or {}).get("act_bits", 99), calibration != "none", calibration, row))
    rows.sort(key=lambda r: r[:5])
    return pd.DataFrame([r[-1] for r in rows])


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
    table = readable(quant_table(variants, ctx.config["reference"], summary, sizes), summary)
    body = (
        table_html(table, "Simulated post-training quantization of the UNet: quality against the "
                          "full-precision reference (mean [95% CI]) and bits-accounted size")
        + source_note(ctx.inputs["summary"][0], ctx.inputs["quant_sizes"][0])
        + "<p class='muted'>W/O: naive ranges (weights min-max per output channel, activations "
          "min-max of one random batch). W: activation ranges calibrated on the named calibration "
          "set, weight and activation clipping chosen by a squared-error search. Fake quantization "
          "(quantize-dequantize in float): it shows the quality cost, not speed; real low-bit "
          "kernels are separate variants. Size: quantized weights at b bits plus a float32 scale "
          "and a b-bit zero point per output channel, other parameters at the variant's dtype. "
          "See docs/quantization.md.</p>"
    )
    return Section("Quantization (Q-Diffusion table)", body, "quantization")
