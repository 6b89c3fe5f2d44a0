"""Per-run targets of the acceleration benchmark (the ratios themselves: sdsqueeze.accel.measure)."""

from __future__ import annotations

import pandas as pd

from sdsqueeze.accel.measure import derived, full_work, in_run_order, load, meta_for, run_of


def targets_by_run(results_csvs: list[str]) -> pd.DataFrame:
    """The study's targets, each judged inside one run (baseline and candidate timed on one machine,
    in one process): batch-1 speedup of the best full-work variant over fp16 SDPA eager, batch-4
    share of the run's own matmul rate, and the best speedup over fp16 classic with any shortcut."""
    out = []
    _, flops = load(results_csvs)  # FLOPs belong to the architecture: any run's count serves all
    for path in in_run_order(results_csvs):
        rows, _ = load([path])
        meta = meta_for(path)
        table = derived(rows, flops).merge(rows[["variant", "batch", "steps", "deepcache"]],
                                           on=["variant", "batch"])
        table = table[table.status == "ok"]
        for column in ("speedup vs fp16 SDPA eager", "speedup vs fp16 classic", "share of bf16 matmul rate"):
            if column not in table:
                table[column] = float("nan")  # that run timed no such baseline / counted no FLOPs
        record = {"run": run_of(path),
                  "device": meta.get("versions", {}).get("gpu", "?"),
                  "matmul TFLOP/s": meta.get("bf16_matmul_tflops", float("nan"))}
        full = table[table.apply(full_work, axis=1)]
        b1 = full[(full.batch == 1) & full["speedup vs fp16 SDPA eager"].notna()]
        if not b1.empty:
            best = b1.loc[b1["s/image"].idxmin()]
            record.update({"b1 best full-work": best.variant, "b1 s/image": best["s/image"],
                           "b1 vs SDPA eager": best["speedup vs fp16 SDPA eager"]})
        b4 = full[(full.batch == 4) & full["share of bf16 matmul rate"].notna()]
        if not b4.empty:
            best = b4.loc[b4["share of bf16 matmul rate"].idxmax()]
            record.update({"b4 best share": best.variant, "b4 share": best["share of bf16 matmul rate"]})
        anything = table[table["speedup vs fp16 classic"].notna()]
        for batch in (1, 4):
            rows_b = anything[anything.batch == batch]
            if not rows_b.empty:
                record[f"b{batch} best vs classic"] = rows_b["speedup vs fp16 classic"].max()
        out.append(record)
    return pd.DataFrame(out)
