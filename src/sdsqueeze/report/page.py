"""Page assembly: context, sections, and the HTML shell."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import io


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
        path = self.out_dir / name
        self.figures.append(path)
        return path

    def rel(self, path: str | Path) -> str:
        """A path relative to the report folder, for links."""
        import os

        return os.path.relpath(Path(path).resolve(), self.out_dir.resolve())


def source_note(*paths: str) -> str:
    links = ", ".join(f"<code>{html.escape(str(p))}</code>" for p in paths)
    return f'<p class="source">Source: {links}</p>'


def table_html(frame, caption: str = "") -> str:
    table = frame.to_html(index=False, border=0, classes="data", na_rep="—", escape=True)
    return (f"<p class='caption'>{html.escape(caption)}</p>" if caption else "") + table


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
     color:#1d1d1f;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem} h2{border-bottom:2px solid #e5e5ea;padding-bottom:.3rem;margin-top:2.5rem}
table.data{border-collapse:collapse;font-size:.92rem;margin:.6rem 0}
table.data th,table.data td{padding:.35rem .7rem;border-bottom:1px solid #e5e5ea;text-align:right}
table.data th:first-child,table.data td:first-child{text-align:left}
table.data thead th{background:#f5f5f7}
p.source{color:#6e6e73;font-size:.85rem} p.caption{font-weight:600;margin-bottom:0}
img.figure{max-width:100%;border:1px solid #e5e5ea;border-radius:6px;margin:.5rem 0}
pre{background:#f5f5f7;padding:.8rem;border-radius:6px;overflow-x:auto;font-size:.82rem}
nav a{margin-right:1rem} .muted{color:#6e6e73}
ul.glance{background:#f5f9ff;border:1px solid #cfe0fb;border-radius:8px;padding:.8rem 1rem .8rem 2rem;
     font-size:1.02rem} ol.notes{font-size:.82rem;color:#6e6e73;word-break:break-word}
table.data{display:block;overflow-x:auto}
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
<p>The validated config, defaults filled:</p><pre>{config_yaml}</pre></section>
</body></html>
"""


def build_report(inputs: dict[str, list[str]], config: dict, out_html: str | Path,
                 sections: list[Callable[[ReportContext], Section | None]] | None = None,
                 commands: list[str] | None = None) -> list[Path]:
    """Write the page and its figures; returns the figure paths."""
    from .sections import SECTIONS, glance

    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    ctx = ReportContext(inputs=inputs, config=config, out_dir=out_html.parent)
    built = []
    for make in sections or SECTIONS:
        section = make(ctx)
        if section is not None:
            section.anchor = section.anchor or make.__name__
            built.append(section)
    page = render_page(config["report"]["title"], built, config, commands or [], glance(ctx))
    io.write_text(out_html, page)
    return ctx.figures
