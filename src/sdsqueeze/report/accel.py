"""Report sections of the acceleration stage: the benchmark table (GPU runs committed under
benchmarks/results/ and/or the DAG's own results/benchmarks/accel/), quality against steps per
scheduler, and the K/V cache's agreement with its uncached twin."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from .page import ReportContext, Section, source_note, table_html

SHOWN = ["variant", "s/image", "UNet ms/step", "peak MB", "UNet MB (memory)",
         "speedup vs fp16 classic", "speedup vs fp16 SDPA eager",
         "memory reduction vs fp16 SDPA eager", "share of bf16 matmul rate"]
SCHEDULER_KEYS = {"scheduler", "steps"}


def _formatted(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for column in out.columns:
        if column.startswith("speedup"):
            out[column] = out[column].map(lambda v: f"{v:.2f}×" if pd.notna(v) else None)
        elif column.startswith(("memory reduction", "share")):
            out[column] = out[column].map(lambda v: f"{v:.0%}" if pd.notna(v) else None)
        elif out[column].dtype.kind == "f":
            digits = 3 if column == "s/image" else 1
            out[column] = out[column].map(lambda v, digits=digits: f"{v:.{digits}f}" if pd.notna(v) else None)
    return out


def benchmark_section(ctx: ReportContext) -> Section | None:
    if not ctx.has("accel_benchmark"):
        return None
    from ..accel import measure as benchtables

    body = []
    for label, paths in _by_origin(ctx.inputs["accel_benchmark"]).items():
        rows, flops = benchtables.load(paths)
        table = benchtables.derived(rows, flops)
        meta = benchtables.meta_for(paths[0])
        versions = meta.get("versions", {})
        body.append(f"<h3>{html.escape(label)}</h3><p>{html.escape(meta.get('note', ''))} on "
                    f"<b>{html.escape(str(versions.get('gpu', 'CPU')))}</b>; torch {versions.get('torch')}, "
                    f"diffusers {versions.get('diffusers')}, torchao {versions.get('torchao')}; "
                    f"{meta.get('size')} px, {meta.get('steps')} steps unless the variant says otherwise.</p>")
        for batch, group in table.groupby("batch"):
            ok = group[group.status == "ok"]
            body.append(table_html(_formatted(ok[[c for c in SHOWN if c in ok]]), f"batch {batch}"))
            failed = group[group.status != "ok"]
            if not failed.empty:
                body.append(table_html(failed[["variant", "status"]], f"batch {batch}: not timed"))
        body.append(source_note(*paths))
    return Section("Acceleration benchmark", "".join(body), "accel-benchmark")


def _by_origin(paths: list[str]) -> dict[str, list[str]]:
    """Committed GPU runs one table per lent machine (timings of two machines never mix);
    the DAG's own benchmark apart."""
    from ..accel import measure as benchtables

    committed = [p for p in paths if Path(p).parts[:2] == ("benchmarks", "results")]
    groups = {f"GPU runs on {machine} (benchmarks/results)": runs
              for machine, runs in benchtables.by_machine(committed).items()}
    own = [p for p in paths if p not in committed]
    if own:
        groups["This run's benchmark"] = own
    return groups


def kv_cache_section(ctx: ReportContext) -> Section | None:
    """Final latents of each K/V-cached variant against its uncached twin: float tolerance."""
    if not ctx.has("shards"):
        return None
    from ..intermediates import load_latents
    from ..variants import resolve_variant

    specs = {n: resolve_variant(ctx.config, n) for n in ctx.config["variants"]}
    rows = []
    for name, spec in specs.items():
        if not spec.get("kv_cache"):
            continue
        twin = next((n for n, s in specs.items() if {**s, "name": name, "kv_cache": True} == spec
                     and not s.get("kv_cache")), None)
        if twin is None:
            continue
        diffs, norms = [], []
        for cached_dir, plain_dir in zip(_shards(ctx, name), _shards(ctx, twin)):
            cached, plain = load_latents(cached_dir), load_latents(plain_dir)
            for key in plain:
                diffs.append(float((cached[key] - plain[key]).abs().max()))
                norms.append(float((cached[key] - plain[key]).norm() / plain[key].norm()))
        rows.append({"cached variant": name, "uncached twin": twin, "images": len(diffs),
                     "max |Δ latent|": max(diffs), "max relative error": max(norms)})
    if not rows:
        return None
    body = (table_html(pd.DataFrame(rows), "Cross-attention K/V cache against the same variant uncached")
            + "<p class='muted'>Final latents before VAE decoding; float32 rounding is ~1e-6 relative.</p>")
    return Section("K/V cache check", body, "kv-cache")


def _shards(ctx: ReportContext, variant: str) -> list[str]:
    return sorted(d for d in ctx.inputs["shards"] if f"/{variant}/shard-" in d)
