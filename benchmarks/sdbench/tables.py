"""Per-run targets of the acceleration benchmark (the ratios themselves: sdsqueeze.accel.measure)."""

from __future__ import annotations

import re
from pathlib import Path

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
# Its channels-last GroupNorm form (accel/groupnorm.py), also with 1x1 convolutions as matmuls or the
# fused GEGLU (accel/geglu.py): of those a run timed, the fastest is the baseline every 8-bit ratio of
# that run is taken against.
BEST_16BIT_CANDIDATES = (BEST_16BIT, "fp16-compiled-host-gn", "fp16-compiled-host-gn-mm",
                         "fp16-compiled-host-gn-geglu")
KERNEL_CLASSES = ("conv", "gemm", "attention", "norm", "quantize", "elementwise", "other")
# The matrix classes each static scheme runs in its 8-bit format (the rest run fp16: bf16 peak).
STATIC_CLASSES = {f"{fmt}-static{suffix}": classes for fmt in ("fp8", "int8")
                  for suffix, classes in (("-linear", ("gemm",)), ("-gemm", ("gemm",)), ("", ("gemm", "conv")))}
# Each format's acceptance targets against the best 16-bit build: CFG UNet step, end to end (None: none set).
SPEEDUP_TARGETS = {"fp8": (1.3, 1.2), "int8": (1.15, None)}


def static_format(scheme) -> str | None:
    """fp8 or int8 for a static scheme, else None."""
    return scheme.split("-", 1)[0] if isinstance(scheme, str) and scheme in STATIC_CLASSES else None


def planned_scheme(variant: str):
    """The lowbit scheme a benchmark variant is built with (config/accel.yaml), also for rows that
    were skipped or failed before recording it; None when it has none."""
    from .run import GROUPS

    builds = {name: build for group in GROUPS.values() for name, build in group.items()}
    return builds.get(variant, {}).get("lowbit")


def _schemes(rows: pd.DataFrame) -> pd.Series:
    recorded = rows.get("lowbit", pd.Series(index=rows.index, dtype=object))
    return recorded.where(recorded.map(lambda v: isinstance(v, str)), rows.variant.map(planned_scheme))


def lowbit_runs(results_csvs: list[str]) -> list[str]:
    """The runs that timed a form of the best 16-bit build and beside it a static fp8 or int8 build
    or another of its forms (the 16-bit push)."""
    def has_study(path):
        rows = pd.read_csv(path)
        timed = rows[rows.status.eq("ok")]
        forms = set(timed.variant) & set(BEST_16BIT_CANDIDATES)
        return bool(forms) and (_schemes(timed).isin(STATIC_CLASSES).any() or len(forms) > 1)

    return [p for p in in_run_order(results_csvs) if has_study(p)]


def warm_outcomes(results_csv: str) -> dict[str, str]:
    """Variant -> how its cache-warming job ended ("ok" or "stopped at the N s deadline"), read from
    the warm.log beside the run's results (benchmarks/warm_compile_cache.py's lines); {} without one."""
    log = Path(results_csv).with_name("warm.log")
    lines = log.read_text().splitlines() if log.is_file() else []
    jobs = (re.match(r"job\d+ \[(.+)\]: (.+), \d+ s$", line) for line in lines)
    return {entry.split(":", 1)[-1]: m.group(2) for m in jobs if m for entry in m.group(1).split(",")}


def not_timed(status: str, warm: str | None) -> str:
    """A row's status as the tables show it: why the variant has no time, in one line."""
    if status.startswith("skipped: time budget"):
        deadline = re.search(r"(\d+) s deadline", warm or "")
        return "not timed: time budget" + (
            f" (compile unfinished at the {deadline.group(1)} s warming deadline)" if deadline else "")
    first = status.splitlines()[0].removeprefix("error: ").replace(": at ", " at ").rstrip(":")
    return f"not timed: {first}"  # an error's first line; the traceback is in the run's log.txt


def best_16bit(rows: pd.DataFrame) -> str:
    """The run's best 16-bit build: the fastest CFG UNet step at batch 4 among the candidates it timed."""
    timed = rows[rows.ok & (rows.batch == 4) & rows.variant.isin(BEST_16BIT_CANDIDATES)]
    return timed.loc[timed.unet_ms_step_median.idxmin(), "variant"] if not timed.empty else BEST_16BIT


def lowbit_table(results_csv: str) -> pd.DataFrame:
    """Per variant at batch 4: CFG UNet step and end-to-end time, both against the best 16-bit
    build, quality against the reference variant's outputs, UNet weight bytes; the variants
    without a time last, with the reason."""
    rows, _ = load([results_csv])
    rows["lowbit"] = _schemes(rows)
    ok = rows[rows.ok & (rows.batch == 4)].set_index("variant")
    best = ok.loc[best_16bit(rows)]
    quality = sorted(c for c in ok.columns if c.startswith("vs_"))
    out = []
    for variant, r in ok.iterrows():
        alpha = r.get("lowbit_smoothquant")
        record = {"variant": variant, "lowbit": r.lowbit if isinstance(r.lowbit, str) else "none",
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
    warm = warm_outcomes(results_csv)
    out += [{"variant": v, "lowbit": scheme if isinstance(scheme, str) else "", "UNet ms/step": float("nan"),
             "status": not_timed(s, warm.get(v))}
            for v, scheme, s in zip(skipped.variant, skipped.lowbit, skipped.status)]
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


def lowbit_findings(results_csv: str, with_classes: bool = True) -> list[str]:
    """The study's acceptance figures, judged inside the run: the fastest fp8 build against the best
    16-bit build (CFG UNet step >= 1.3x, end to end >= 1.2x), the fastest int8 build (step >= 1.15x),
    the best 16-bit build's share of the bf16 matmul rate (>= 50%), where each 8-bit build's GPU
    time goes per kernel class (the int8 conv kernel alone: ``int8_conv_findings``)."""
    variants = lowbit_table(results_csv)
    timed = variants[variants["UNet ms/step"].notna()]
    compiled = {fmt: timed[timed.lowbit.map(static_format).eq(fmt) & timed.compiled.eq(True)] for fmt in SPEEDUP_TARGETS}
    rows, flops = load([results_csv])
    baseline = best_16bit(rows)
    out = [_fastest(builds, fmt, baseline) for fmt, builds in compiled.items() if not builds.empty]
    untimed = variants[variants["UNet ms/step"].isna()]
    for fmt, builds in compiled.items():
        planned = untimed[untimed.lowbit.map(static_format).eq(fmt)]
        if builds.empty and not planned.empty:
            out.append(f"No {fmt} build timed ({len(planned)} planned; why: the status column).")
    out += matmul_share_findings(results_csv)
    if with_classes:  # False: the caller shows no classes table for this run, so no lines read from it
        classes = kernel_class_table(results_csv)
        for fmt, builds in compiled.items():
            out += _kernel_class_bound(classes, builds, fmt, baseline)
    return out


def matmul_share_findings(results_csv: str) -> list[str]:
    """One line: each 16-bit candidate build the run timed at batch 4, its UNet step, TFLOP/s and share
    of the run's bf16 matmul rate, and each share's verdict against the 50% target."""
    rows, flops = load([results_csv])
    step_flops = flops.get(4, {}).get("unet_step_flops")
    peak = meta_for(results_csv).get("bf16_matmul_tflops")
    timed = rows[rows.ok & (rows.batch == 4) & rows.variant.isin(BEST_16BIT_CANDIDATES)]
    if not step_flops or not peak or timed.empty:
        return []
    shares = []
    for variant, step_ms in zip(timed.variant, timed.unet_ms_step_median):
        rate = step_flops / (step_ms / 1e3) / 1e12
        shares.append((f"`{variant}` {step_ms:.2f} ms, {rate:.0f} TFLOP/s, {rate / peak:.1%}", rate / peak))
    verdicts = ", ".join("met" if share >= 0.5 else "missed" for _, share in shares)
    return ["16-bit builds at batch 4, CFG UNet step and share of the measured bf16 matmul rate (target 50%): "
            + "; ".join(text for text, _ in shares) + f" ({verdicts})."]


def _fastest(builds: pd.DataFrame, fmt: str, baseline: str) -> str:
    best = builds.loc[builds["UNet ms/step"].idxmin()]
    step, e2e = best["step speedup vs best 16-bit"], best["e2e speedup vs best 16-bit"]
    step_target, e2e_target = SPEEDUP_TARGETS[fmt]
    line = (f"Fastest {fmt} build, `{best.variant}`: CFG UNet step {step:.2f}x and end to end {e2e:.2f}x "
            f"the best 16-bit build `{baseline}` ")
    if e2e_target is None:
        return line + f"(target {step_target}x for the step: {'met' if step >= step_target else 'missed'})."
    return line + (f"(targets {step_target}x and {e2e_target}x: "
                   f"{'met' if step >= step_target else 'missed'}, {'met' if e2e >= e2e_target else 'missed'}).")


def _kernel_class_bound(classes: pd.DataFrame, builds: pd.DataFrame, fmt: str, baseline: str) -> list[str]:
    """The bound on the format's all-layer build (else its fastest profiled one) were its 8-bit classes at
    the format's peak, against the best 16-bit build's GPU time (the class table beside it has the rest)."""
    full = classes[classes.variant.isin(builds.variant)]
    if full.empty or baseline not in set(classes.variant):
        return []
    all_layers = next((v for v in (f"fp16-{fmt}static-compiled-gn", f"fp16-{fmt}static-compiled") if v in set(full.variant)), None)
    variant = all_layers if all_layers else full.groupby("variant")["GPU ms per generation"].sum().idxmin()
    matrix = classes[(classes.variant == variant) & classes["TFLOP/s"].notna()].set_index("class")
    low = [k for k in matrix.index if matrix.loc[k, "precision"] == fmt]
    shares = [matrix.loc[k, "share of that precision's peak"] for k in low]
    if not low or any(share is None or share != share for share in shares):
        return []  # no peak of this format measured in the run: no bound
    ideal = sum(matrix.loc[k, "GPU ms per generation"] * share for k, share in zip(low, shares))
    low_ms = sum(matrix.loc[k, "GPU ms per generation"] for k in low)
    total = classes[classes.variant == variant]["GPU ms per generation"].sum()
    reference = classes[classes.variant == baseline]["GPU ms per generation"].sum()
    return [f"Bound: were `{variant}`'s {fmt} classes ({', '.join(low)}) at 100% of the {fmt} peak, its GPU time "
            f"would fall from {total:.0f} to {total - low_ms + ideal:.0f} ms per generation, "
            f"{reference / (total - low_ms + ideal):.2f}x the best 16-bit build's {reference:.0f} ms "
            "(the class columns show where the rest goes)."]


# ---- the int8 implicit-GEMM conv alone, per 3x3 shape of the UNet (conv_rates.csv) --------------

def int8_conv_table(results_csv: str) -> pd.DataFrame:
    """Per measured 3x3 shape: the int8 kernel's TOPS, its share of the run's measured int8 GEMM peak,
    cuDNN fp16 beside it and their ratio, an int8 GEMM of the same ops, the kernel's error against its
    fp32 simulation, and how often the shape runs per UNet call. Empty without int8 rates."""
    from .convbench import unet_conv_shapes

    conv_csv = Path(results_csv).with_name("conv_rates.csv")
    peak = meta_for(results_csv).get("int8_matmul_tops")
    conv = pd.read_csv(conv_csv) if conv_csv.is_file() else pd.DataFrame()
    if "triton_int8_tops" not in conv or not peak:
        return pd.DataFrame()
    conv = conv[conv.status.eq("ok")]
    counts = unet_conv_shapes()
    return pd.DataFrame({
        "hw": conv.hw, "cin": conv.cin, "cout": conv.cout, "stride": conv.stride,
        "per UNet call": [counts.get((r.hw, r.cin, r.cout, r.stride), 0) for r in conv.itertuples()],
        "int8 kernel TOPS": conv.triton_int8_tops, "share of int8 peak": conv.triton_int8_tops / peak,
        "cuDNN fp16 TFLOP/s": conv.cudnn_fp16_tflops, "int8 / cuDNN fp16": conv.triton_int8_tops / conv.cudnn_fp16_tflops,
        "int8 GEMM same ops TOPS": conv.int8_gemm_same_ops_tops,
        "int8 kernel vs simulation rel err": conv.int8_kernel_vs_simulation_rel_err,
        "int8 vs fp16 conv rel err": conv.int8_vs_fp16_conv_rel_err,
    }).reset_index(drop=True)


def int8_conv_findings(results_csv: str, baseline: str = BEST_16BIT) -> list[str]:
    """The int8 conv kernel's range over the measured shapes and its rate over the UNet's 3x3 convs
    (each shape weighted by its FLOPs per UNet call, so the rate is total ops over total time), and
    what that rate would make of the best 16-bit build's conv class in this run's profile."""
    from .convbench import conv_flops, unet_conv_shapes

    table = int8_conv_table(results_csv)
    if table.empty:
        return []
    peak = meta_for(results_csv)["int8_matmul_tops"]
    all_shapes = unet_conv_shapes()
    ops = pd.Series([conv_flops(r.hw, r.cin, r.cout, r.stride) for r in table.itertuples()]) * table["per UNet call"]
    covered = ops.sum() / sum(conv_flops(*shape) * n for shape, n in all_shapes.items())

    def weighted(rate: pd.Series) -> float:  # total ops / total time over the UNet's measured shapes
        return ops.sum() / (ops / rate).sum()

    int8, cudnn, gemm = (weighted(table[c]) for c in ("int8 kernel TOPS", "cuDNN fp16 TFLOP/s", "int8 GEMM same ops TOPS"))
    share, ratio = table["share of int8 peak"], table["int8 / cuDNN fp16"]
    out = [f"3x3 convs alone: the int8 implicit-GEMM kernel reaches {share.min():.0%}-{share.max():.0%} of the "
           f"int8 peak measured in this run ({peak:.0f} TOPS) and {ratio.min():.2f}-{ratio.max():.2f}x cuDNN fp16 "
           f"on the {len(table)} shapes; weighted by FLOPs per UNet call (these shapes: {covered:.0%} of its 3x3 "
           f"conv FLOPs) {int8:.0f} TOPS, {int8 / peak:.0%} of the peak and {int8 / cudnn:.2f}x cuDNN fp16 "
           f"({cudnn:.0f} TFLOP/s); an int8 GEMM of the same ops: {gemm:.0f} TOPS, {gemm / cudnn:.2f}x. Relative error "
           f"at most {table['int8 kernel vs simulation rel err'].max():.1e} against the kernel's fp32 simulation, "
           f"{table['int8 vs fp16 conv rel err'].max():.3f} against the fp16 conv."]
    classes = kernel_class_table(results_csv)
    base = classes[classes.variant == baseline].set_index("class")["GPU ms per generation"]
    if "conv" in base:
        total, conv_ms = base.sum(), base["conv"]

        def speedup(times_cudnn: float) -> float:
            return total / (total - conv_ms + conv_ms / times_cudnn)

        target = SPEEDUP_TARGETS["int8"][0]
        at_kernel, at_gemm = speedup(int8 / cudnn), speedup(gemm / cudnn)
        if at_kernel >= target:
            verdict = f"would meet the {target}x target"
        elif at_gemm >= target:
            verdict = f"miss the {target}x target, which needs a conv near the int8 GEMM's rate"
        else:
            verdict = (f"miss the {target}x target even at the int8 GEMM's rate: the rest must come from "
                       "the int8 linears and the 16-bit norm, attention and elementwise work")
        out.append(f"Bound from this run's profile of `{baseline}` (conv class, 1x1 and VAE convs included: "
                   f"{conv_ms:.0f} of {total:.0f} GPU ms per generation): its convs at the kernel's {int8 / cudnn:.2f}x "
                   f"cuDNN fp16 would make its GPU time {at_kernel:.2f}x as fast, at the int8 GEMM's {gemm / cudnn:.2f}x "
                   f"{at_gemm:.2f}x; int8 convs alone {verdict}.")
    return out
