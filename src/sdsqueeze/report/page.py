"""The page's building blocks: context, section, table and number formatting, the HTML shell.

A leaf of the report package: it imports no section (report/build.py assembles the page).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

FIGURES_DIR = "figures"

# Column names of the CSVs as a reader should see them (units in brackets).
HUMAN_NAMES = {
    "bpp": "Bits per pixel", "psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS",
    "latent_snr_db": "Latent SNR (dB)", "decode_s": "Decode (s)", "encode_s_per_image": "Encode (s / image)",
    "clip_score": "CLIP score", "psnr_gray_db": "PSNR, grey (dB)", "bits_ans": "Bits (ANS coder)",
    "n_prompts": "Prompts", "n_images": "Images", "images": "Images", "model": "Model", "point": "Rate point",
    "variant": "Variant", "scheduler": "Scheduler", "steps": "Steps", "ratio": "Ratio", "step": "Step",
    "ssim_gray": "SSIM, grey", "psnr_rgb_db": "PSNR, RGB (dB)", "ssim_rgb": "SSIM, RGB", "bits_zlib": "Bits (zlib)",
    "entropy_bits": "Entropy (bits)", "runs": "Runs", "level": "Level",
    "worst_chunk_excess_bits": "Worst chunk KL over budget (bits; ≤ 0: within)",
}


def human(column: str) -> str:
    """A column header without snake_case: known names from HUMAN_NAMES, others spelled out."""
    if column in HUMAN_NAMES:
        return HUMAN_NAMES[column]
    if "_" not in column:
        return column[:1].upper() + column[1:]
    text = column.replace("_", " ")
    for unit in (" db", " s", " mb"):
        if text.endswith(unit):
            text = text[: -len(unit)] + f" ({unit.strip().replace('db', 'dB').replace('mb', 'MB')})"
    return text[0].upper() + text[1:]


def number(x: float, digits: int) -> str:
    """Fixed digits, but values too small to show that way (e.g. −3.7e-08) in scientific form;
    never "-0.00" or "nan"."""
    if x is None or not np.isfinite(x):
        return "—" if x is None or np.isnan(x) else ("∞" if x > 0 else "−∞")
    if x != 0 and abs(x) < 0.5 * 10 ** -digits:
        return f"{x:.2e}"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def interval(mean: float, low: float, high: float, digits: int) -> str:
    if np.isinf(mean):
        return "identical (∞)"
    return f"{number(mean, digits)} [{number(low, digits)}, {number(high, digits)}]"


def percent(fraction: float) -> str:
    """A percentage that never reads "-0%"."""
    if fraction is None or not np.isfinite(fraction):
        return "—"
    value = round(100 * fraction)
    return f"{value + 0:d}%"


def _clean_cell(value):
    """What a table cell must never show: nan, None, -0."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    if isinstance(value, str) and value.strip() in ("nan", "None", "NaN", "-0%", "-0"):
        return {"-0%": "0%", "-0": "0"}.get(value.strip(), "—")
    return value


@dataclass
class Section:
    title: str
    body_html: str
    anchor: str = ""


@dataclass
class ReportContext:
    """What sections read: named input files, the config, and where to put figures."""

    inputs: dict[str, list[str]]
    config: dict
    out_dir: Path
    figures: list[Path] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return bool(self.inputs.get(name))

    def figure_path(self, name: str) -> Path:
        """Where a figure goes: results/report/figures/, which the report rule declares with
        report(), so `snakemake --report` holds every figure of the page."""
        path = self.out_dir / FIGURES_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.figures.append(path)
        return path

    def rel(self, path: str | Path) -> str:
        """A path relative to the report folder, for links."""
        import os

        return os.path.relpath(Path(path).resolve(), self.out_dir.resolve())


def source_note(*paths: str) -> str:
    links = ", ".join(f"<code>{html.escape(str(p))}</code>" for p in paths)
    return f'<p class="source">Source: {links}</p>'


def table_html(frame: pd.DataFrame, caption: str = "", wrap: bool = False) -> str:
    """A table with human headers and no nan/None/-0 cells (every section goes through here);
    ``wrap`` for tables of sentences: cells wrap and align left."""
    clean = frame.rename(columns=human)
    for column in clean.columns:
        if clean[column].dtype.kind == "f":
            clean[column] = clean[column] + 0.0  # turns -0.0 into 0.0
        elif clean[column].dtype.kind == "O":
            clean[column] = clean[column].map(_clean_cell)
    table = clean.to_html(index=False, border=0, classes="data wrap" if wrap else "data", na_rep="—", escape=True,
                          float_format=lambda v: f"{v:.4g}" if np.isfinite(v) else ("∞" if v > 0 else "−∞"))
    return (f"<p class='caption'>{html.escape(caption)}</p>" if caption else "") + table


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
     color:#1d1d1f;line-height:1.45;padding:0 1rem;max-width:1300px}
h1{margin-bottom:.2rem} h2{border-bottom:2px solid #e5e5ea;padding-bottom:.3rem;margin-top:2.5rem}
table.data{border-collapse:collapse;font-size:.92rem;margin:.6rem 0}
table.data th,table.data td{padding:.3rem .6rem;border-bottom:1px solid #e5e5ea;text-align:right}
table.data td{white-space:nowrap} table.data td:last-child{white-space:normal;min-width:9rem}
table.data th{vertical-align:bottom}
table.data.wrap td{white-space:normal;text-align:left;vertical-align:top;max-width:30rem}
table.data th:first-child,table.data td:first-child{text-align:left}
table.data thead th{background:#f5f5f7}
p.source{color:#6e6e73;font-size:.85rem} p.caption{font-weight:600;margin-bottom:0}
img.figure{max-width:100%;border:1px solid #e5e5ea;border-radius:6px;margin:.5rem 0}
pre{background:#f5f5f7;padding:.8rem;border-radius:6px;overflow-x:auto;font-size:.82rem}
nav a{margin-right:1rem} .muted{color:#6e6e73}
div.grid{display:flex;flex-wrap:wrap;gap:.8rem} figure.variant{margin:0;border:1px solid #e5e5ea;border-radius:6px;
     padding:.3rem .4rem} figure.variant figcaption{font-size:.85rem;font-weight:600;margin-bottom:.2rem}
figure.variant img{width:72px;height:72px;margin-right:2px;image-rendering:auto}
p.unavailable{background:#fff8e6;border:1px solid #f3d98b;border-radius:6px;padding:.4rem .7rem}
ul.glance{background:#f5f9ff;border:1px solid #cfe0fb;border-radius:8px;padding:.8rem 1rem .8rem 2rem;
     font-size:1.02rem} ol.notes{font-size:.82rem;color:#6e6e73;word-break:break-word}
table.data{display:block;overflow-x:auto}
p.banner{background:#fff1f0;border:2px solid #d70015;border-radius:8px;padding:.7rem 1rem;color:#86000e;
     font-weight:600}
"""


def render_page(title: str, sections: list[Section], config: dict, commands: list[str],
                glance_html: str = "") -> str:
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>\n{s.body_html}\n</section>'
        for s in sections
    )
    config_yaml = html.escape(yaml.safe_dump(config, sort_keys=False))
    command_lines = html.escape("\n".join(commands))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">Model <code>{html.escape(str(config['model']['source']))}</code> on
<code>{html.escape(str(config['device']))}</code>; reference variant
<code>{html.escape(config['reference'])}</code>.</p>
{glance_html}
<nav>{nav} <a href="#config">Config</a></nav>
{body}
<section id="config"><h2>Commands and config</h2>
<p>Produced by:</p><pre>{command_lines}</pre>
<p>Rebuild one part: <code>snakemake --cores all metrics_all</code>, or a single file such as
<code>snakemake --cores all results/metrics/{html.escape(str(config['model']['name']))}/distribution.csv</code>.</p>
<details><summary>The validated config, defaults filled</summary><pre>{config_yaml}</pre></details></section>
</body></html>
"""
