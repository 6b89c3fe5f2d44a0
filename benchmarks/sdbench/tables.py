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


# ---- the static fp8 and int8 study: one run, every ratio inside it -----------------------------

BEST_16BIT = "fp16-compiled-host"  # the best 16-bit build (compiled, CUDA graphs, host timesteps)
KERNEL_CLASSES = ("conv", "gemm", "attention", "norm", "quantize", "elementwise", "other")
# The matrix classes each static scheme runs in its 8-bit format (the rest run fp16: bf16 peak).
STATIC_CLASSES = {f"{fmt}-static{suffix}": classes for fmt in ("fp8", "int8")
                  for suffix, classes in (("-linear", ("gemm",)), ("-gemm", ("gemm",)), ("", ("gemm", "conv")))}
# Each format's acceptance targets against the best 16-bit build: CFG UNet step, end to end (None: none set).
SPEEDUP_TARGETS = {"fp8": (1.3, 1.2), "int8": (1.15, None)}


def static_format(scheme) -> str | None:
    """fp8 or int8 for a static scheme, else None."""
    return scheme.split("-", 1)[0] if isinstance(scheme, str) and scheme in STATIC_CLASSES else None


def lowbit_runs(results_csvs: list[str]) -> list[str]:
    """The runs that timed a static fp8 or int8 build beside the best 16-bit build."""
    def has_study(path):
        rows = pd.read_csv(path)
        return BEST_16BIT in set(rows.variant) and rows.get("lowbit", pd.Series(dtype=str)).astype(str) \
            .isin(STATIC_CLASSES).any()

    return [p for p in in_run_order(results_csvs) if has_study(p)]


def lowbit_table(results_csv: str) -> pd.DataFrame:
    """Per variant at batch 4: CFG UNet step and end-to-end time, both against the best 16-bit
    build, quality against the reference variant's outputs, UNet weight bytes."""
    rows, _ = load([results_csv])
    ok = rows[rows.ok & (rows.batch == 4)].set_index("variant")
    best = ok.loc[BEST_16BIT]
    quality = sorted(c for c in ok.columns if c.startswith("vs_"))
    out = []
    for variant, r in ok.iterrows():
        alpha = r.get("lowbit_smoothquant")
        record = {"variant": variant, "lowbit": r.get("lowbit") if isinstance(r.get("lowbit"), str) else "none",
                  "SmoothQuant alpha": alpha if alpha == alpha and alpha is not None else 0.0,
                  "compiled": r.get("compile") not in (None, "none") and r.get("compile") == r.get("compile"),
                  "UNet ms/step": r.unet_ms_step_median, "s/image": r.s_per_image,
                  "step speedup vs best 16-bit": best.unet_ms_step_median / r.unet_ms_step_median,
                  "e2e speedup vs best 16-bit": best.s_per_image / r.s_per_image,
                  "UNet MB": r.unet_bytes_memory / 2**20, "peak MB": r.peak_memory_mb}
        for column in quality:
            record[column] = r[column]
        out.append(record)
    skipped = rows[~rows.ok & (rows.batch == 4)]
    out += [{"variant": v, "lowbit": "", "UNet ms/step": float("nan"), "status": s}
            for v, s in zip(skipped.variant, skipped.status)]
    return pd.DataFrame(out)


def kernel_class_table(results_csv: str) -> pd.DataFrame:
    """Per profiled variant: GPU ms per kernel class over one generation and, for the matrix
    classes, the achieved TFLOP/s against the measured peak of the precision that class runs in."""
    from sdsqueeze.accel.measure import class_rates

    rows, flops = load([results_csv])
    meta = meta_for(results_csv)
    peaks = {"fp8": meta.get("fp8_matmul_tflops"), "bf16": meta.get("bf16_matmul_tflops"),
             "int8": meta.get("int8_matmul_tops")}
    profiled = rows[rows.ok & rows.kernel_ms_by_class.notna()] if "kernel_ms_by_class" in rows else rows.iloc[:0]
    out = []
    for r in profiled.itertuples():
        import json

        kernel_ms = json.loads(r.kernel_ms_by_class)
        scheme = r.lowbit if isinstance(r.lowbit, str) else "none"
        rates = class_rates(kernel_ms, flops.get(int(r.batch), {}), int(r.unet_calls_per_image_call),
                            pointwise_as_gemm=scheme in STATIC_CLASSES and scheme.split("-")[-1] != "linear")
        for kernel in KERNEL_CLASSES:
            if kernel not in kernel_ms and kernel not in rates:
                continue
            precision = static_format(scheme) if kernel in STATIC_CLASSES.get(scheme, ()) else "bf16"
            rate = rates.get(kernel)
            out.append({"variant": r.variant, "batch": int(r.batch), "class": kernel,
                        "GPU ms per generation": kernel_ms.get(kernel, 0.0),
                        "TFLOP/s": rate, "precision": precision if rate else "",
                        "share of that precision's peak": rate / peaks[precision] if rate and peaks.get(precision) else None})
    return pd.DataFrame(out)


def lowbit_findings(results_csv: str) -> list[str]:
    """The study's acceptance figures, judged inside the run: the fastest fp8 build against the best
    16-bit build (CFG UNet step >= 1.3x, end to end >= 1.2x), the fastest int8 build (step >= 1.15x),
    the best 16-bit build's share of the bf16 matmul rate (>= 50%), and where each 8-bit build's GPU
    time goes per kernel class."""
    variants = lowbit_table(results_csv)
    timed = variants[variants["UNet ms/step"].notna()]
    compiled = {fmt: timed[timed.lowbit.map(static_format).eq(fmt) & timed.compiled.eq(True)] for fmt in SPEEDUP_TARGETS}
    rows, flops = load([results_csv])
    meta = meta_for(results_csv)
    out = [_fastest(builds, fmt) for fmt, builds in compiled.items() if not builds.empty]
    base = rows[(rows.variant == BEST_16BIT) & rows.ok & (rows.batch == 4)]
    step_flops = flops.get(4, {}).get("unet_step_flops")
    if not base.empty and step_flops:
        rate = step_flops / (base.unet_ms_step_median.iloc[0] / 1e3) / 1e12
        share = rate / meta["bf16_matmul_tflops"]
        out.append(f"`{BEST_16BIT}` at batch 4: {rate:.0f} TFLOP/s per UNet step, {share:.0%} of the measured "
                   f"bf16 matmul rate (target 50%: {'met' if share >= 0.5 else 'missed'}).")
    classes = kernel_class_table(results_csv)
    for fmt, builds in compiled.items():
        out += _kernel_class_bound(classes, builds, fmt)
    return out


def _fastest(builds: pd.DataFrame, fmt: str) -> str:
    best = builds.loc[builds["UNet ms/step"].idxmin()]
    step, e2e = best["step speedup vs best 16-bit"], best["e2e speedup vs best 16-bit"]
    step_target, e2e_target = SPEEDUP_TARGETS[fmt]
    line = (f"Fastest {fmt} build, `{best.variant}`: CFG UNet step {step:.2f}x and end to end {e2e:.2f}x "
            f"the best 16-bit build `{BEST_16BIT}` ")
    if e2e_target is None:
        return line + f"(target {step_target}x for the step: {'met' if step >= step_target else 'missed'})."
    return line + (f"(targets {step_target}x and {e2e_target}x: "
                   f"{'met' if step >= step_target else 'missed'}, {'met' if e2e >= e2e_target else 'missed'}).")


def _kernel_class_bound(classes: pd.DataFrame, builds: pd.DataFrame, fmt: str) -> list[str]:
    """GPU time per kernel class of the format's all-layer build (else its fastest profiled one)
    against the best 16-bit build's, and the bound were its 8-bit classes at the format's peak."""
    full = classes[classes.variant.isin(builds.variant)]
    if full.empty or BEST_16BIT not in set(classes.variant):
        return []
    all_layers = f"fp16-{fmt}static-compiled"
    variant = all_layers if all_layers in set(full.variant) else full.groupby("variant")["GPU ms per generation"].sum().idxmin()
    mine = classes[classes.variant == variant].set_index("class")["GPU ms per generation"]
    theirs = classes[classes.variant == BEST_16BIT].set_index("class")["GPU ms per generation"]
    deltas = ", ".join(f"{k} {mine.get(k, 0) - theirs.get(k, 0):+.0f} ms" for k in KERNEL_CLASSES
                       if k in mine or k in theirs)
    out = [f"GPU time per generation, `{variant}` minus `{BEST_16BIT}`, by kernel class: {deltas}."]
    matrix = classes[(classes.variant == variant) & classes["TFLOP/s"].notna()].set_index("class")
    low = [k for k in matrix.index if matrix.loc[k, "precision"] == fmt]
    shares = [matrix.loc[k, "share of that precision's peak"] for k in low]
    if not low or any(share is None or share != share for share in shares):
        return out  # no peak of this format measured in the run: no bound
    ideal = sum(matrix.loc[k, "GPU ms per generation"] * share for k, share in zip(low, shares))
    low_ms = sum(matrix.loc[k, "GPU ms per generation"] for k in low)
    total, reference = mine.sum(), theirs.sum()
    out.append(f"Bound: were `{variant}`'s {fmt} classes ({', '.join(low)}) "
               f"at 100% of the {fmt} peak, its GPU time would fall from {total:.0f} to {total - low_ms + ideal:.0f} ms "
               f"per generation, {reference / (total - low_ms + ideal):.2f}x the best 16-bit build's {reference:.0f} ms: "
               "the 16-bit classes (norm, attention, elementwise) and the quantize kernels hold the rest.")
    return out
