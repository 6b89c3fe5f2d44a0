"""Report sections of the acceleration stage: the current committed GPU result per GPU type, and
the K/V cache's agreement with its uncached twin."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .page import ReportContext, Section, percent, source_note, table_html

BASELINE_ROWS = ("fp16-classic", "fp16-sdpa")


def committed_gpu_results(root: str | Path = ".") -> list[str]:
    """The committed GPU benchmark results that stand for each GPU type now (listed in
    benchmarks/results/current.yaml: ``accel.measure.committed_results``), relative to ``root``."""
    from ..accel.measure import committed_results

    return [os.path.relpath(path, root) for path in committed_results(root)]


def current_runs(paths: list[str]) -> dict[str, str]:
    """GPU type -> its current run: of the runs with complete metadata (meta.json with versions,
    size, steps), the one timing both baselines and the most builds successfully, the latest on a
    tie. One run, because ratios are only valid within one machine and process; runs without
    metadata never reach the report."""
    from ..accel import measure

    best: dict[str, tuple] = {}
    for order, path in enumerate(measure.in_run_order(paths)):
        meta = measure.meta_for(path)
        gpu = meta.get("versions", {}).get("gpu")
        if "meta_source" in meta or not gpu or not meta.get("size") or not meta.get("steps"):
            continue
        ok = pd.read_csv(path).query("status == 'ok'")
        score = (set(BASELINE_ROWS) <= set(ok.variant), ok.variant.nunique(), order)
        if gpu not in best or score > best[gpu][0]:
            best[gpu] = (score, path)
    return {gpu: path for gpu, (_, path) in best.items()}


def current_table(path: str) -> pd.DataFrame:
    """One run's compact result: baselines, the best full-work build, the fastest of each low-bit
    kind; batch-1 time and ratios, batch-4 share of the measured bf16 matmul peak. Error rows
    never appear."""
    from ..accel import measure

    rows, flops = measure.load([path])
    rows = rows[rows.status == "ok"]
    table = measure.derived(rows, flops).merge(
        rows[["variant", "batch", "steps", "deepcache", "lowbit"]], on=["variant", "batch"])
    one, four = table[table.batch == 1], table[table.batch == 4].set_index("variant")
    if one.empty:
        return pd.DataFrame()
    full = one[one.apply(measure.full_work, axis=1)]
    picks = [(v, "baseline") for v in BASELINE_ROWS if v in set(one.variant)]
    if not full.empty:
        picks.append((full.loc[full["s/image"].idxmin()].variant, "best build (full work)"))
    lowbit = one[one.lowbit.notna() & (one.lowbit.astype(str) != "")]
    for kind, group in lowbit.groupby("lowbit"):
        picks.append((group.loc[group["s/image"].idxmin()].variant, f"low-bit ({kind})"))
    out = []
    for variant, role in dict(picks).items():
        r = one.set_index("variant").loc[variant]
        share = four.loc[variant].get("share of bf16 matmul rate") if variant in four.index else None
        out.append({"Build": variant, "Role": role, "s / image (batch 1)": f"{r['s/image']:.3f}",
                    "× fp16 classic": _ratio(r.get("speedup vs fp16 classic")),
                    "× fp16 SDPA eager": _ratio(r.get("speedup vs fp16 SDPA eager")),
                    "Share of bf16 matmul peak (batch 4)": percent(share) if share is not None else "—"})
    return pd.DataFrame(out)


def _ratio(value) -> str:
    return f"{value:.2f}×" if value is not None and pd.notna(value) else "—"


def benchmark_section(ctx: ReportContext) -> Section | None:
    """The current GPU result per GPU type; the runs' history stays in docs/benchmarks.md."""
    if not ctx.has("accel_benchmark"):
        return None
    from ..accel import measure

    body = []
    for gpu, path in current_runs(ctx.inputs["accel_benchmark"]).items():
        table = current_table(path)
        if table.empty:
            continue
        meta = measure.meta_for(path)
        versions = meta["versions"]
        body.append(table_html(table, f"{gpu}: {meta.get('note', 'SD')} at {meta['size']} px, {meta['steps']} "
                                      f"steps (torch {versions.get('torch', '?')}, diffusers "
                                      f"{versions.get('diffusers', '?')}, torchao {versions.get('torchao', '?')})"))
        body.append(source_note(path))
    if not body:
        return None
    body.append("<p class='muted'>Per GPU type, the run with complete metadata that timed both baselines "
                "and the most builds (the latest on a tie); ratios are within that run (baseline and build "
                "timed on one machine, in one process). Method, every build and the other runs: "
                "<a href='../../docs/benchmarks.md'>docs/benchmarks.md</a>.</p>")
    return Section("GPU benchmark (current)", "".join(body), "accel-benchmark")


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
        rows.append({"Cached variant": name, "Uncached twin": twin, "Images": len(diffs),
                     "Max |Δ latent|": max(diffs), "Max relative error": max(norms)})
    if not rows:
        return None
    body = (table_html(pd.DataFrame(rows), "Cross-attention K/V cache against the same variant uncached")
            + "<p class='muted'>Final latents before VAE decoding; float32 rounding is ~1e-6 relative.</p>")
    return Section("K/V cache check", body, "kv-cache")


def _shards(ctx: ReportContext, variant: str) -> list[str]:
    return sorted(d for d in ctx.inputs["shards"] if f"/{variant}/shard-" in d)
