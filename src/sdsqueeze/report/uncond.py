"""Report section: the seed's LSUN table for an unconditional model (docs/unconditional.md).

Rows as the seed lays them out: the full-precision baseline, then per bit width W/O (no calibration
set) and W (each calibration set). Columns: the seed's FID and IS (pytorch-fid's Inception; FID here
against the baseline's images, since no training set is at hand; "unavailable" with the reason,
stated once, where the weights are missing), FD-EffNetLite0 against the baseline (runs offline), and
PSNR/SSIM against the baseline image of the same seed with their intervals and verdicts.

``lsun_table`` takes plain frames, so the report and docs/unconditional.md
(``python -m sdsqueeze.report.uncond render``) build the same table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .page import ReportContext, Section, source_note, table_html

CALIBRATION_LABELS = {"none": "W/O", "noise_data": "W (noise)", "raw_data": "W (raw data)",
                      "timestep_aware": "W (timestep-aware)"}
DISTRIBUTION = (("FID", "fid_reference", 2), ("IS", "inception_score", 2), ("FD-EffNetLite0", "fd_effnetlite0", 2))
PAIRED = (("PSNR (dB)", "psnr", 2), ("SSIM", "ssim", 4))


def ordered_variants(variants: dict, reference: str) -> list[tuple[str, dict | None]]:
    """Baseline first, then by bits (high first), W/O before W, calibration kinds in a fixed order."""
    kinds = list(CALIBRATION_LABELS)
    ptq = [(name, spec["ptq"]) for name, spec in variants.items() if (spec or {}).get("ptq")]
    ptq.sort(key=lambda item: (-item[1]["weight_bits"], -item[1]["act_bits"],
                               kinds.index(item[1].get("calibration", "none")), item[0]))
    return [(reference, None), *ptq]


def interval(value: float, low: float, high: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if np.isfinite(low) and np.isfinite(high) and low != high:
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def distribution_cell(rows: pd.DataFrame, metric: str, digits: int, reasons: set) -> str:
    found = rows[rows.metric == metric]
    if found.empty:
        return "not computed"
    row = found.iloc[0]
    if row.status != "ok":
        reasons.add(str(row.status).removeprefix("unavailable: "))
        return "unavailable"
    text = interval(row.value, row.get("ci_low", np.nan), row.get("ci_high", np.nan), digits)
    return text + (f" ± {row['std']:.{digits}f}" if np.isfinite(row.get("std", np.nan)) else "")


def paired_cell(summary: pd.DataFrame, differences: pd.DataFrame, metric: str, digits: int) -> str:
    found = summary[summary.metric == metric]
    if found.empty:
        return "not computed"
    row = found.iloc[0]
    if np.isinf(row["mean"]):
        text = "identical (∞)"
    else:
        text = interval(row["mean"], row.ci_low, row.ci_high, digits)
    verdict = differences[differences.metric == metric]
    return text + (f" — {verdict.iloc[0].verdict}" if not verdict.empty else "")


def gain_over_wo(per_image: pd.DataFrame, variant: str, without: str, metric: str, settings: dict,
                 margin: float | None = None) -> str:
    """W minus W/O of the same bits, paired per sample id (same seeds): mean [bootstrap interval],
    with a verdict where the metric has an equivalence margin."""
    from ..quality.verdicts import margin_verdict
    from .quant import bootstrap, per_prompt

    scores = per_prompt(per_image, metric)
    if variant not in scores or without not in scores:
        return "not computed"
    mean, low, high = bootstrap((scores[variant] - scores[without]).dropna(), settings)
    text = f"{mean:+.{3 if metric == 'ssim' else 2}f} [{low:+.{3 if metric == 'ssim' else 2}f}, " \
           f"{high:+.{3 if metric == 'ssim' else 2}f}]"
    return text + (f" — {margin_verdict(low, high, margin, True)}" if margin is not None else "")


def lsun_table(variants: dict, reference: str, summary: pd.DataFrame, differences: pd.DataFrame,
               distribution: pd.DataFrame, dtype: str = "float32", per_image: pd.DataFrame | None = None,
               settings: dict | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The seed's LSUN table, and the reasons of the cells that read "unavailable" (each once).
    With ``per_image`` (and ``settings``: confidence, resamples, seed, the SSIM margin), each W row
    also shows its gain over the W/O row of the same bits, paired per sample."""
    reasons: set = set()
    settings = settings or {}
    without = {(p["weight_bits"], p["act_bits"]): name for name, p in ordered_variants(variants, reference)[1:]
               if p.get("calibration", "none") == "none"}
    baseline_bits = {"float32": 32, "bfloat16": 16, "float16": 16}[dtype]
    rows = []
    for name, ptq in ordered_variants(variants, reference):
        row = {"Calib": "Baseline" if ptq is None else CALIBRATION_LABELS[ptq.get("calibration", "none")],
               "Bits (W/A)": f"W{baseline_bits}A{baseline_bits}" if ptq is None
               else f"W{ptq['weight_bits']}A{ptq['act_bits']}",
               "Variant": name}
        own = distribution[distribution.variant == name]
        for label, metric, digits in DISTRIBUTION:
            reference_only = ptq is None and metric != "inception_score"  # compared with itself
            row[label] = "reference" if reference_only else distribution_cell(own, metric, digits, reasons)
        for label, metric, digits in PAIRED:
            row[label] = "reference" if ptq is None else paired_cell(
                summary[summary.variant == name], differences[differences.variant == name], metric, digits)
        if per_image is not None:
            base = without.get((ptq["weight_bits"], ptq["act_bits"])) if ptq else None
            calibrated = ptq is not None and ptq.get("calibration", "none") != "none"
            row["ΔPSNR vs W/O (dB)"] = gain_over_wo(per_image, name, base, "psnr", settings) \
                if calibrated and base else ""
            row["ΔSSIM vs W/O"] = gain_over_wo(per_image, name, base, "ssim", settings, settings.get("ssim_margin")) \
                if calibrated and base else ""
        rows.append(row)
    return pd.DataFrame(rows), sorted(reasons)


NOTE = (
    "<p class='muted'>The seed's LSUN table on this model: W/O = min-max ranges over the pipeline's own "
    "first UNet call (its seeded initial noise at the schedule's first timestep, no text); W = ranges "
    "over the named calibration set (noise, or photographs through the model's autoencoder, noised to "
    "sampled timesteps), with the variant's range search and AdaRound. FID is against the baseline's "
    "images (no training set at hand), IS is the Inception Score (± its std over splits); "
    "FD-EffNetLite0 against the baseline with a bootstrap interval over samples; PSNR/SSIM against the "
    "baseline image of the same seed, mean [interval over samples] — verdict at the configured "
    "equivalence margins. ΔPSNR and ΔSSIM vs W/O: what calibration gains over the W/O row of the same "
    "bits, paired per sample (same seeds), with the SSIM margin's verdict. See docs/unconditional.md.</p>")


def gain_settings(config: dict) -> dict:
    metrics = config.get("metrics", {})
    return {"confidence": metrics.get("confidence", 0.95), "resamples": metrics.get("bootstrap_resamples", 2000),
            "seed": config.get("seed", 0), "ssim_margin": (metrics.get("equivalence") or {}).get("ssim")}


def uncond_section(ctx: ReportContext) -> Section | None:
    from ..config import UNCONDITIONAL, model_kind

    if model_kind(ctx.config) != UNCONDITIONAL or not (ctx.has("summary") and ctx.has("distribution")):
        return None
    variants = ctx.config["variants"]
    if not any((spec or {}).get("ptq") for spec in variants.values()):
        return None
    summary = pd.read_csv(ctx.inputs["summary"][0])
    differences = pd.read_csv(ctx.inputs["differences"][0]) if ctx.has("differences") else summary.iloc[:0]
    distribution = pd.read_csv(ctx.inputs["distribution"][0])
    dtype = {**ctx.config["generation"], **variants[ctx.config["reference"]]}["dtype"]
    per_image = pd.concat([pd.read_csv(p) for p in ctx.inputs["per_image"]], ignore_index=True) \
        if ctx.has("per_image") else None
    table, reasons = lsun_table(variants, ctx.config["reference"], summary, differences, distribution, dtype,
                                per_image, gain_settings(ctx.config))
    body = table_html(table, "Q-Diffusion's LSUN table on this unconditional model: W/O vs W calibration")
    body += "".join(f"<p class='muted'>unavailable: {reason}</p>" for reason in reasons)
    body += source_note(ctx.inputs["summary"][0], ctx.inputs["distribution"][0]) + NOTE
    return Section("Unconditional model: Q-Diffusion's LSUN table", body, "unconditional")


# --- docs/unconditional.md's table, generated from a run's CSVs committed under docs/unconditional/ ---
#   python -m sdsqueeze.report.uncond collect config/uncond-smoke.yaml   # results/ -> docs/unconditional/
#   python -m sdsqueeze.report.uncond render                             # docs/unconditional/ -> the doc's block

DATA_DIR = "docs/unconditional"
DOC = "docs/unconditional.md"
BEGIN = "<!-- BEGIN generated by `python -m sdsqueeze.report.uncond render`; do not edit -->"
END = "<!-- END generated -->"
CSVS = ("summary.csv", "differences.csv", "distribution.csv")
PER_IMAGE_COLUMNS = ["prompt_id", "sample", "variant", "psnr", "ssim"]


def collect(config_path: str, data_dir: str = DATA_DIR) -> None:
    """Copy a finished run's metric CSVs and its variants into ``data_dir``."""
    import shutil
    from pathlib import Path

    import yaml

    from ..quant.doctable import machine

    config = yaml.safe_load(Path(config_path).read_text())
    out = Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = Path("results/metrics") / config["model"]["name"]
    for name in CSVS:
        shutil.copyfile(metrics / name, out / name)
    per_image = pd.concat([pd.read_csv(metrics / "per_image" / f"{v}.csv") for v in config["variants"]])
    per_image[PER_IMAGE_COLUMNS].to_csv(out / "per_image.csv", index=False)
    run = {"command": f"snakemake --cores 2 --configfile {config_path}", "machine": machine(), "reference": config["reference"], "variants": config["variants"],
           "generation": config["generation"], "samples": config["prompts"]["n"], "seed": config["seed"],
           "metrics": config.get("metrics", {})}
    (out / "run.yaml").write_text(yaml.safe_dump(run, sort_keys=False))


def render_block(data_dir: str = DATA_DIR) -> str:
    from pathlib import Path

    import yaml

    data = Path(data_dir)
    run = yaml.safe_load((data / "run.yaml").read_text())
    summary, differences, distribution = (pd.read_csv(data / name) for name in CSVS)
    spec = {**run["generation"], **(run["variants"][run["reference"]] or {})}
    per_image = pd.read_csv(data / "per_image.csv")
    table, reasons = lsun_table(run["variants"], run["reference"], summary, differences, distribution,
                                spec.get("dtype", "float32"), per_image, gain_settings(with_defaults(run)))
    lines = [BEGIN, "",
             f"From `{run['command']}` ({run['machine']}; {run['samples']} samples, DDIM {spec['steps']} steps, "
             f"eta {spec.get('eta', 0.0)}); CSVs in `{DATA_DIR}/`.", "",
             table.to_markdown(index=False), ""]
    lines += [f"Unavailable: {reason}." for reason in reasons]
    return "\n".join(lines + ([""] if reasons else []) + [END])


def with_defaults(run: dict) -> dict:
    """The run's seed and metrics settings with the schema's defaults filled (as the report saw them)."""
    from ..config import load_schema

    metrics = load_schema()["properties"]["metrics"]["properties"]
    filled = {key: run["metrics"].get(key, metrics[key].get("default"))
              for key in ("confidence", "bootstrap_resamples", "equivalence")}
    if isinstance(filled["equivalence"], dict) or filled["equivalence"] is None:
        defaults = {k: v.get("default") for k, v in metrics["equivalence"].get("properties", {}).items()}
        filled["equivalence"] = {**defaults, **(run["metrics"].get("equivalence") or {})}
    return {"seed": run["seed"], "metrics": filled}


def render(doc: str = DOC, data_dir: str = DATA_DIR) -> None:
    from pathlib import Path

    text = Path(doc).read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    Path(doc).write_text(text[:start] + render_block(data_dir) + text[stop:])


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="docs/unconditional.md's LSUN-layout table")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("collect").add_argument("config")
    commands.add_parser("render")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.config)
    else:
        render()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
