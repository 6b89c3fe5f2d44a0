"""Report section: the variants whose UNet runs on ONNX Runtime, beside the PyTorch reference.

Per variant: the exported model (precision, file size, exporter, the one-off export or
quantization cost), its generation time against the reference's, and its quality verdicts against
the reference (PSNR threshold, SSIM margin), so ORT fp32 is shown to match and int8 to cost what it
costs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .page import ReportContext, Section, source_note, table_html


def export_records(folders: list[str]) -> dict[str, dict]:
    """Export folder name -> its export.json params (what the export/quantization job did)."""
    from ..accel.onnx_plan import RECORD_FILE

    return {Path(f).name: json.loads((Path(f) / RECORD_FILE).read_text())["params"] for f in folders}


def onnx_table(config: dict, records: dict[str, dict], timing: pd.DataFrame,
               differences: pd.DataFrame) -> pd.DataFrame:
    from ..accel.onnx_plan import export_name, uses_onnx
    from ..variants import resolve_variant

    reference = config["reference"]
    seconds = timing.set_index("variant").seconds_per_image_median
    cpu = timing.set_index("variant").cpu_seconds_per_image_median if "cpu_seconds_per_image_median" in timing else {}
    rows = []
    for name in sorted(config["variants"]):
        spec = resolve_variant(config, name)
        if not uses_onnx(spec):
            continue
        record = records.get(export_name(spec, config["calibration"]), {})
        verdicts = differences[differences.variant == name].set_index("metric")
        row = {"variant": name, "UNet on onnxruntime": record.get("precision", "—"),
               "file MB": record.get("file_bytes", float("nan")) / 2**20,
               "export / quantization s (once)": record.get("seconds", float("nan")),
               "s/image": seconds.get(name, float("nan")),
               f"time vs {reference}": seconds.get(name, float("nan")) / seconds.get(reference, float("nan")),
               # process CPU time: on a shared CPU, what other jobs cannot inflate
               "CPU s/image": cpu.get(name, float("nan")),
               f"CPU time vs {reference}": cpu.get(name, float("nan")) / cpu.get(reference, float("nan"))}
        for metric in ("psnr", "ssim"):
            if metric in verdicts.index:
                hit = verdicts.loc[metric]
                row[f"{metric} vs reference"] = f"{hit.difference:.3g} [{hit.ci_low:.3g}, {hit.ci_high:.3g}]"
                row[f"{metric} verdict"] = hit.verdict
        rows.append(row)
    return pd.DataFrame(rows)


def onnx_section(ctx: ReportContext) -> Section | None:
    if not (ctx.has("onnx_exports") and ctx.has("timing") and ctx.has("differences")):
        return None
    records = export_records(ctx.inputs["onnx_exports"])
    table = onnx_table(ctx.config, records, pd.read_csv(ctx.inputs["timing"][0]),
                       pd.read_csv(ctx.inputs["differences"][0]))
    if table.empty:
        return None
    fp32 = next((r for r in records.values() if r.get("precision") == "fp32"), {})
    check = fp32.get("check", {})
    body = table_html(table, "UNet on ONNX Runtime (CPU execution provider unless a GPU one is recorded), "
                             "against the PyTorch reference; PSNR/SSIM: paired mean [95% CI]")
    body += (f"<p class='muted'>Export: {fp32.get('exporter', '—')} exporter, opset {fp32.get('opset', '—')}; "
             f"onnx checker passed; max |ONNX − PyTorch| UNet output {check.get('max_abs_diff', float('nan')):.3g} "
             f"(max |output| {check.get('max_abs_output', float('nan')):.3g}). int8: onnxruntime.quantization "
             "over Conv/MatMul/Gemm (dynamic: activation ranges per call; static: QDQ, ranges from the "
             "calibration set). Times are indicative: wall clock and process CPU time.</p>")
    body += source_note(*ctx.inputs["onnx_exports"], ctx.inputs["timing"][0], ctx.inputs["differences"][0])
    return Section("ONNX Runtime", body, "onnxruntime")
