"""The page, assembled: the ordered list of sections and build_report.

A section is a function ``(ReportContext) -> Section | None``; None when its inputs are absent
(a stage switched off). A new section is one line in SECTIONS.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import io
from . import accel, claims, diffc, distill, onnx, quant, sections, sweep, uncond
from .page import ReportContext, Section, render_page

SectionMaker = Callable[[ReportContext], Section | None]

# Page order: the headline table, quality, cost/quality trade-offs, then each stage.
SECTIONS: list[SectionMaker] = [
    sections.variants_section,
    sections.quality_section,
    sections.adherence_section,
    sections.distribution_section,
    sections.pareto_section,
    sections.steps_section,
    uncond.uncond_section,
    quant.quant_section,
    distill.distill_section,
    onnx.onnx_section,
    accel.kv_cache_section,
    sweep.sweep_section,
    diffc.diffc_section,
    claims.claims_section,
    accel.benchmark_section,
    sections.image_grid_section,
]


def build_report(inputs: dict[str, list[str]], config: dict, out_html: str | Path,
                 section_makers: list[SectionMaker] | None = None,
                 commands: list[str] | None = None) -> list[Path]:
    """Write the page and its figures; returns the figure paths."""
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    ctx = ReportContext(inputs=inputs, config=config, out_dir=out_html.parent)
    built = []
    for make in SECTIONS if section_makers is None else section_makers:
        section = make(ctx)
        if section is not None:
            section.anchor = section.anchor or make.__name__
            built.append(section)
    page = render_page(config["report"]["title"], built, config, commands or [],
                       sections.where_it_ran(ctx) + sections.glance(ctx))
    io.write_text(out_html, page)
    return ctx.figures
