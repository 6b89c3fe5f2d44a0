"""Print docs/benchmarks.md's generated tables from the committed GPU results (no number typed by hand).

    python benchmarks/render_tables.py                  # the current table of each GPU type
    python benchmarks/render_tables.py --targets        # the study's targets, per committed run
    python benchmarks/render_tables.py --lowbit         # the static fp8/int8 study (docs/lowbit.md)
    python benchmarks/render_tables.py --kernels        # kernel classes alone (docs/kernel-limits.md)
    python benchmarks/render_tables.py --routes         # routes past them (docs/kernel-limits.md)

The current runs per GPU type are listed in benchmarks/results/current.yaml; tests/unit/test_docs.py
re-renders the block between the markers in docs/benchmarks.md and compares.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from sdbench import tables  # noqa: E402 - sdbench sits beside this script
from sdsqueeze.accel import measure  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROUTES = RESULTS / "routes_h200"  # benchmarks/kernel_routes.py's committed run
# The 8-bit builds' paired verdicts on the embedded model, kept from a run of config/fp8-static.yaml
# (``--collect-quality``), beside bf16 SDPA, the 16-bit build the same run judges.
EMBEDDED_QUALITY = RESULTS.parents[1] / "docs" / "lowbit" / "embedded_quality.csv"
QUALITY_RUN = "snakemake --cores 2 --configfile config.yaml config/fp8-static.yaml"
QUALITY_METRICS = {"psnr": "PSNR dB", "ssim": "SSIM Δ", "adherence_overall": "adherence Δ"}


def current_runs(results: Path = RESULTS) -> dict[str, list[str]]:
    """GPU type -> results.csv paths (relative to the repository) of its current runs."""
    listed = yaml.safe_load((results / "current.yaml").read_text())
    root = results.parents[1]
    return {gpu: [str((results / run / "results.csv").relative_to(root)) for run in runs]
            for gpu, runs in listed.items()}


def targets_markdown(paths: list[str]) -> str:
    table = tables.targets_by_run(paths)
    table.insert(1, "machine", [measure.machine_of(p) for p in measure.in_run_order(paths)])
    table = table.drop(columns="device")
    for column in table.columns:
        if column.startswith(("b1 vs", "b1 best vs", "b4 best vs")):
            table[column] = table[column].map(lambda v: f"{v:.2f}x" if v == v else "—")
        elif column == "b4 share":
            table[column] = table[column].map(lambda v: f"{v:.1%}" if v == v else "—")
        elif column in ("b1 s/image", "matmul TFLOP/s"):
            digits = 3 if column == "b1 s/image" else 0
            table[column] = table[column].map(lambda v, digits=digits: f"{v:.{digits}f}" if v == v else "—")
    return table.fillna("—").to_markdown(index=False)


def current_markdown(results: Path = RESULTS) -> str:
    """One compact table per GPU type: its current runs' timed variants, batch 1 and 4 side by side."""
    root = results.parents[1]
    parts = []
    for gpu, paths in current_runs(results).items():
        meta = measure.meta_for(root / paths[0])
        versions = meta.get("versions", {})
        runs = ", ".join(f"`{Path(p).parent.name}`" for p in paths)
        parts.append(f"### {gpu}\n\n{versions.get('gpu')}; torch {versions.get('torch')}, "
                     f"diffusers {versions.get('diffusers')}, torchao {versions.get('torchao')}; "
                     f"{meta.get('size')} px, {meta.get('steps')} steps unless the variant says otherwise; "
                     f"from {runs}.\n\n" + compact_table([str(root / p) for p in paths]))
    return "\n\n".join(parts) + "\n"


def compact_table(paths: list[str]) -> str:
    """Rows: timed variants, fastest batch-1 first; a column pair per batch (a "—" = not timed)."""
    rows, flops = measure.load(paths)
    table = measure.derived(rows, flops)
    ok = table[table.status == "ok"]
    wide = ok.pivot(index="variant", columns="batch")
    columns = {"s/image": "{:.3f}", "speedup vs fp16 SDPA eager": "{:.2f}x", "peak MB": "{:.0f}",
               "share of bf16 matmul rate": "{:.0%}"}
    header = ["variant"] + [f"{name} (b{b})" for name in columns for b in sorted(ok.batch.unique())
                            if (name, b) in wide]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = wide[("s/image", 1)] if ("s/image", 1) in wide else wide.iloc[:, 0]
    for variant in order.sort_values(na_position="last").index:
        cells = [f"`{variant}`"]
        for name, fmt in columns.items():
            for b in sorted(ok.batch.unique()):
                if (name, b) in wide:
                    value = wide.loc[variant, (name, b)]
                    cells.append(fmt.format(value) if value == value else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cells(table, digits: dict) -> str:
    """Markdown with per-column rounding (``digits``: column -> format); NaN shows as "—"."""
    shown = table.copy()
    for column, fmt in digits.items():
        if column in shown:
            shown[column] = shown[column].map(lambda v, fmt=fmt: fmt.format(v) if v == v and v is not None else "—")
    shown = shown.astype(object).where(shown.notna(), "—").astype(str)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in shown.itertuples(index=False)])


def _quality_label(column: str, reference: str) -> str:
    """``vs_fp16-sdpa_image_psnr_db`` -> ``image PSNR dB vs fp16-sdpa``."""
    prefix = f"vs_{reference}_"
    if not column.startswith(prefix):
        return column
    what = column[len(prefix):].replace("psnr_db", "PSNR dB").replace("ssim", "SSIM").replace("_", " ")
    return f"{what} vs {reference}"


def lowbit_markdown(results: Path = RESULTS) -> str:
    """docs/lowbit.md's tables: each current run that planned static 8-bit builds beside the best
    16-bit build: its variants and the kernel classes of its profiles (the kernels alone at the UNet's
    shapes are in docs/kernel-limits.md). A build's kernel classes appear once, for the latest run that
    has them (an earlier run's replicate is in its findings and files), so the doc stays short."""
    paths = _current_paths(results)
    parts = []
    runs = tables.lowbit_runs(paths)
    shown_in = {variant: path for path in runs for variant in tables.kernel_class_table(path).get("variant", [])}
    setups = {_setup(measure.meta_for(path)) for path in runs}
    common = len(setups) == 1
    if common:
        parts.append(f"Every run: {setups.pop()}.")
    for path in runs:
        meta = measure.meta_for(path)
        classes = tables.kernel_class_table(path)
        classes = classes[classes.variant.map(shown_in).eq(path)] if not classes.empty else classes
        parts.append(_lowbit_head(path, meta, with_classes=not classes.empty, setup_shown=common))
        parts.append(_variants_markdown(tables.lowbit_table(path), meta.get("quality_reference", "fp16-sdpa")))
        if not classes.empty:
            parts.append("GPU ms per kernel class in one profiled generation (51 CFG UNet calls, VAE decode, text "
                         "encoder); for matrix classes, TFLOP/s (TOPS for int8) and the share of that precision's "
                         "peak measured in the run:\n\n" + _classes_markdown(classes))
    if EMBEDDED_QUALITY.is_file():
        parts.append(_embedded_quality_part(pd.read_csv(EMBEDDED_QUALITY)))
    return "\n\n".join(parts) + "\n"


def _current_paths(results: Path) -> list[str]:
    """results.csv of every run benchmarks/results/current.yaml lists."""
    return [str(results.parents[1] / p) for gpu_paths in current_runs(results).values() for p in gpu_paths]


def collect_quality(differences_csv: Path) -> None:
    """Keep the paired verdicts of the overlay's 8-bit variants and bf16 SDPA from a run's differences.csv."""
    import yaml

    overlay = yaml.safe_load((RESULTS.parents[1] / "config" / "fp8-static.yaml").read_text())["variants"]
    rows = pd.read_csv(differences_csv)
    kept = rows[rows.variant.isin([*overlay, "bf16-sdpa"]) & rows.metric.isin(QUALITY_METRICS)]
    EMBEDDED_QUALITY.parent.mkdir(parents=True, exist_ok=True)
    kept[["variant", "metric", "difference", "ci_low", "ci_high", "n_prompts", "verdict", "bound"]].to_csv(
        EMBEDDED_QUALITY, index=False)


def _embedded_quality_part(quality: pd.DataFrame) -> str:
    """One row per variant: each metric's value or difference [95% interval] and verdict."""
    def cell(r) -> str:
        digits = "{:.2f}" if r.metric == "psnr" else "{:.3f}"
        return f"{digits.format(r.difference)} [{digits.format(r.ci_low)}, {digits.format(r.ci_high)}]: {r.verdict}"

    table = quality.assign(cell=quality.apply(cell, axis=1)).pivot(index="variant", columns="metric", values="cell")
    table = table[[m for m in QUALITY_METRICS if m in table.columns]].rename(columns=QUALITY_METRICS)
    bounds = quality.drop_duplicates("metric").set_index("metric").bound
    margins = ", ".join(f"PSNR >= {bounds[m]:g} dB" if m == "psnr" else f"{QUALITY_METRICS[m].split()[0]} |Δ| <= {bounds[m]:g}"
                        for m in QUALITY_METRICS if m in bounds)
    return (f"### Quality on the embedded model\n\n`{QUALITY_RUN}` (the 8-bit arithmetic simulated on the CPU), "
            f"paired with the run's reference `fp32-classic` over {int(quality.n_prompts.max())} prompts, 95% "
            f"bootstrap intervals; margins: {margins} (`docs/lowbit/embedded_quality.csv`, kept by "
            "`python benchmarks/render_tables.py --collect-quality results/metrics/tiny/differences.csv`):\n\n"
            + _cells(table.reindex(list(dict.fromkeys(quality.variant))).reset_index(), {}))


def kernel_limits_markdown(results: Path = RESULTS) -> str:
    """docs/kernel-limits.md's tables: per current run that measured kernels alone at the UNet's
    shapes, its 3x3 conv rates (conv_rates.csv) and its attention and GroupNorm rates against the
    copy and exp2 rates (kernel_rates.csv). The fp8 conv table appears once, for the first run; the
    kernel rates for the latest run that measured them (earlier ones stay in their folders)."""
    paths = tables.in_run_order(_current_paths(results))
    parts, fp8_conv_shown = [], False
    with_rates = [path for path in paths if Path(path).with_name("kernel_rates.csv").is_file()]
    for path in paths:
        conv_csv, rates_csv = Path(path).with_name("conv_rates.csv"), Path(path).with_name("kernel_rates.csv")
        show_rates = path in with_rates[-1:]  # an earlier run's rates are superseded by the latest's
        if not (conv_csv.is_file() or show_rates):
            continue
        meta = measure.meta_for(path)
        parts.append(f"### `{Path(path).parent.name}`: {meta.get('machine')}\n\n{_setup(meta)}. "
                     f"Command: `{meta.get('command')}`.")
        if show_rates:
            parts += [f"- {line}" for line in tables.matmul_share_findings(path)]
            parts += _kernel_rates_part(meta, pd.read_csv(rates_csv), path)
        if conv_csv.is_file():
            conv_part, fp8_conv_shown = _conv_rates_part(path, conv_csv, fp8_conv_shown)
            parts += conv_part
            parts += [f"- {line}" for line in tables.int8_conv_findings(path)]
    return "\n\n".join(parts) + "\n"


def _kernel_rates_part(meta: dict, rates: pd.DataFrame, results_csv: str) -> list[str]:
    """kernel_rates.csv: attention against the bf16 peak and the exp2 rate, GroupNorm + SiLU against
    the copy rate, at the UNet's shapes (batch 8), with the per-call totals the bounds are read from."""
    attention = rates[rates.kind == "attention"]
    norms = rates[rates.kind == "groupnorm"]
    fp8 = attention.fp8_sdpa.iloc[0] if "fp8_sdpa" in attention and len(attention) else "not tried"
    attention_us = _per_unet_call(attention, "us")
    head = (f"Kernel classes against their own limits (`kernel_rates.csv`, UNet shapes at batch 8): copy "
            f"{meta.get('copy_gbs', float('nan')):.0f} GB/s (HBM, bytes in + out), exp2 "
            f"{meta.get('exp2_tera_per_s', float('nan')):.2f} T/s (special-function unit), bf16 "
            f"{meta.get('bf16_matmul_tflops', float('nan')):.0f} TFLOP/s. SDPA per UNet call: {attention_us:.0f} us; "
            f"an fp8 SDPA call: `{fp8}`.")
    floor_us = attention_floor_us(attention, meta)
    shown = attention.assign(
        **{"floor us": floor_us, "TFLOP/s": attention.tflops, "share of bf16 peak": attention.share_of_bf16_peak,
           "share of exp2 rate": attention.share_of_exp_rate, "per UNet call": attention.per_unet_call})
    columns = ["heads", "queries", "keys", "head_dim", "per UNet call", "us", "floor us", "TFLOP/s",
               "share of bf16 peak", "share of exp2 rate"]
    if "flex_us" in attention:  # each backend pinned, at the self-attention shapes
        backends = ("flash_us", "cudnn_us", "efficient_us", "flex_us")
        shown["us pinned: flash / cuDNN / efficient / flex"] = [
            "—" if all(pd.isna(v) for v in values) else " / ".join("—" if pd.isna(v) else f"{v:.0f}" for v in values)
            for values in attention[list(backends)].itertuples(index=False)]
        columns.append("us pinned: flash / cuDNN / efficient / flex")
    shown = shown[columns].rename(columns={"head_dim": "head dim"})
    shown = shown.astype({c: int for c in ("heads", "queries", "keys", "head dim", "per UNet call")})
    parts = [head, _cells(shown, {"us": "{:.0f}", "floor us": "{:.0f}", "TFLOP/s": "{:.0f}",
                                  "share of bf16 peak": "{:.0%}", "share of exp2 rate": "{:.0%}"})]
    savings = {"SDPA": _per_unet_call(attention.assign(excess_us=attention.us - floor_us), "excess_us")}
    if not norms.empty:
        per_call = {name: _per_unet_call(norms, f"{name}_us") for name in ("inductor", "channels_last", "copy")}
        parts.append(f"GroupNorm + SiLU, compiled, replayed from a CUDA graph: per UNet call {per_call['inductor']:.0f} us "
                     f"with Inductor's lowering, {per_call['channels_last']:.0f} us channels-last "
                     f"(`accel/groupnorm.py`); a copy of the same bytes {per_call['copy']:.0f} us; its floor 1.5 copies "
                     "(two reads, one write).")
        gn = norms.assign(**{"per UNet call": norms.per_unet_call, "MB in": norms.mbytes_in,
                             "Inductor us": norms.inductor_us, "channels-last us": norms.channels_last_us,
                             "copy us": norms.copy_us,
                             "Inductor / channels-last, share of copy rate":
                                 [f"{a:.0%} / {b:.0%}" for a, b in zip(norms.inductor_share_of_copy_rate,
                                                                      norms.channels_last_share_of_copy_rate)]})
        gn = gn[["channels", "hw", "per UNet call", "MB in", "Inductor us", "channels-last us", "copy us",
                 "Inductor / channels-last, share of copy rate"]].astype({"channels": int, "hw": int, "per UNet call": int})
        parts.append(_cells(gn, {"MB in": "{:.1f}", "Inductor us": "{:.1f}", "channels-last us": "{:.1f}",
                                 "copy us": "{:.1f}"}))
        savings["GroupNorm + SiLU"] = float(per_call["channels_last"] - 1.5 * per_call["copy"])
    gates = rates[rates.kind == "geglu"] if "kind" in rates else rates.iloc[:0]
    if not gates.empty:
        parts += _geglu_part(gates)
        if _has_gemm_alone(gates):
            savings["GEGLU's gate"] = _per_unet_call(gates.assign(gate_us=gates.stock_us - gates.gemm_us), "gate_us")
    bounds = _floor_bounds(savings, meta, results_csv)
    if bounds:
        parts.append(bounds)
    return parts


def _per_unet_call(rows: pd.DataFrame, column: str) -> float:
    """Microseconds per UNet call: each shape's time times how often one call runs it."""
    return float((rows[column] * rows.per_unet_call).sum())


def _has_gemm_alone(gates: pd.DataFrame) -> bool:
    """Whether the run timed the GEGLU projection's cuBLAS GEMM alone (later runs' ``gemm_us``)."""
    return "gemm_us" in gates and bool(gates.gemm_us.notna().all())


def _geglu_part(gates: pd.DataFrame) -> list[str]:
    """kernel_rates.csv's GEGLU rows: diffusers' module compiled against accel/geglu.py's fused GEMM."""
    has_gemm = _has_gemm_alone(gates)
    per_call = {name: _per_unet_call(gates, f"{name}_us") for name in ("stock", "fused", *(["gemm"] if has_gemm else []))}
    head = (f"GEGLU (feed-forward projection and gate, batch 8), compiled, replayed from a CUDA graph: per UNet "
            f"call {per_call['stock']:.0f} us as diffusers' module (cuBLAS GEMM, then Inductor's gate kernel), "
            f"{per_call['fused']:.0f} us as one GEMM with the gate in its epilogue (`accel/geglu.py`)"
            + (f", {per_call['gemm']:.0f} us for cuBLAS's GEMM alone (a gate at no cost)" if has_gemm else "")
            + ". Error: largest absolute difference from a float32 product.")
    shown = gates.assign(**{"per UNet call": gates.per_unet_call, "stock us": gates.stock_us,
                            "GEMM alone us": gates.gemm_us if has_gemm else float("nan"),
                            "fused us": gates.fused_us, "fused TFLOP/s": gates.fused_tflops,
                            "fused share of bf16 peak": gates.fused_share_of_bf16_peak,
                            "error stock / fused": [f"{a:.2g} / {b:.2g}" for a, b in
                                                    zip(gates.stock_max_abs_err, gates.fused_max_abs_err)]})
    columns = ["tokens", "width", "per UNet call", "stock us", *(["GEMM alone us"] if has_gemm else []), "fused us",
               "fused TFLOP/s", "fused share of bf16 peak", "error stock / fused"]
    shown = shown[columns].astype({"tokens": int, "width": int, "per UNet call": int})
    return [head, _cells(shown, {"stock us": "{:.1f}", "GEMM alone us": "{:.1f}", "fused us": "{:.1f}",
                                 "fused TFLOP/s": "{:.0f}", "fused share of bf16 peak": "{:.0%}"})]


def attention_floor_us(attention: pd.DataFrame, meta: dict) -> pd.Series:
    """Per SDPA shape, the least time its work allows: the larger of its exponentials at the measured
    exp2 rate and its two products at the measured bf16 matmul rate (the units overlapping perfectly)."""
    from sdbench.kernelbench import BATCH  # the batch kernel_rates.csv's shapes were timed at

    scores = BATCH * attention.heads * attention.queries * attention["keys"]
    exp_us = scores / (meta["exp2_tera_per_s"] * 1e12) * 1e6
    matmul_us = 4 * scores * attention.head_dim / (meta["bf16_matmul_tflops"] * 1e12) * 1e6
    return pd.concat([exp_us, matmul_us], axis=1).max(axis=1)


def _floor_bounds(savings_us: dict[str, float], meta: dict, results_csv: str) -> str:
    """What the run's best 16-bit build's step would be with each class (and all of them) at its floor."""
    rows, flops = measure.load([results_csv])
    best = tables.best_16bit(rows)
    timed = rows[rows.ok & (rows.batch == 4) & (rows.variant == best)]
    step_flops = flops.get(4, {}).get("unet_step_flops")
    if timed.empty or not step_flops:
        return ""
    step_ms = timed.unet_ms_step_median.iloc[0]

    def share(ms: float) -> str:
        return f"{step_flops / (ms / 1e3) / 1e12 / meta['bf16_matmul_tflops']:.1%}"

    names = list(savings_us)
    written = [name for name in names if name != "SDPA"]  # the classes this project writes kernels for
    # each class alone; with three or more, those written here together; then all
    groups = [[name] for name in names] + ([written] if len(names) > 2 else []) + ([names] if len(names) > 1 else [])
    cases = [(" and ".join(group), sum(savings_us[name] for name in group)) for group in groups]
    parts = [f"{what}: a {step_ms - saved / 1e3:.2f} ms step, {share(step_ms - saved / 1e3)}" for what, saved in cases]
    target_ms = step_flops / (0.5 * meta["bf16_matmul_tflops"] * 1e12) * 1e3
    gate_note = " (GEGLU's gate: at no cost)" if "GEGLU's gate" in savings_us else ""
    return (f"Bounds on the best 16-bit build `{best}` ({step_ms:.2f} ms per CFG UNet step, {share(step_ms)} of the "
            f"bf16 matmul rate; the 50% target is a {target_ms:.2f} ms step), with the per-call time of these classes "
            f"replaced by their floors{gate_note}: " + "; ".join(parts) + ".")


def _classes_markdown(classes: pd.DataFrame) -> str:
    """One row per profiled variant, one column per kernel class: "ms" or "ms: rate precision share"."""
    def cell(r) -> str:
        ms = f"{r['GPU ms per generation']:.0f}"
        if pd.isna(r["TFLOP/s"]):
            return ms
        share = r["share of that precision's peak"]
        return f"{ms}: {r['TFLOP/s']:.0f} {r['precision']}" + ("" if pd.isna(share) else f" {share:.0%}")

    cells = classes.assign(cell=classes.apply(cell, axis=1))
    wide = cells.pivot(index="variant", columns="class", values="cell")
    order = [c for c in tables.KERNEL_CLASSES if c in wide.columns]
    return _cells(wide[order].reindex(list(dict.fromkeys(classes.variant))).reset_index(), {})


def routes_markdown(folder: Path = ROUTES) -> str:
    """docs/kernel-limits.md's routes table: each route's microseconds against the kernel the best
    16-bit build runs now (route_rates.csv of benchmarks/kernel_routes.py's run), and one line per kind."""
    meta = json.loads((folder / "meta.json").read_text())
    rates = pd.read_csv(folder / "route_rates.csv")
    versions = meta["versions"]
    head = (f"`{folder.name}`: {meta['machine']}; {versions['gpu']}, torch {versions['torch']}, triton as shipped "
            f"with it; {meta['note']}. Command: `{meta['command']}`.")
    findings = "\n".join(f"- {line}" for line in _route_findings(rates))
    # attention: the two fastest launches (the others are in route_rates.csv), so the doc stays short
    attention = rates.kind.eq("attention")
    rates = pd.concat([rates[~attention], rates[attention].nsmallest(2, "route_us")]).sort_index()
    table = rates.assign(kind=rates.kind + " vs " + rates.current,
                         shape=rates["shape"].fillna("independent chains"))[
        ["kind", "shape", "route", "current_us", "route_us", "speedup"]]
    table.columns = ["kind vs current kernel", "shape", "route", "current us", "route us", "route vs current"]
    digits = {"current us": "{:.1f}", "route us": "{:.1f}", "route vs current": "{:.2f}x"}
    return "\n\n".join([head, _cells(table, digits), findings]) + "\n"


def _route_findings(rates: pd.DataFrame) -> list[str]:
    by_kind = dict(tuple(rates.groupby("kind")))
    lines = []
    if "exp2" in by_kind:
        exp = by_kind["exp2"].iloc[0]
        lines.append(f"Exponentials in pairs: {exp.route_rate:.2f} T/s against fp32's {exp.current_rate:.2f} T/s: "
                     "two per instruction, at half the instruction rate.")
    if "attention" in by_kind:
        attention = by_kind["attention"]
        best = attention.loc[attention.route_us.idxmin()]
        lines.append(f"Attention: the fastest of {len(attention)} launches ({best.route}) takes {best.route_us:.0f} us, "
                     f"{best.speedup:.2f}x cuDNN's {best.current_us:.0f} us; largest error "
                     f"{best.route_error:.1e} against {best.current_error:.1e} (float32 reference).")
    if "gemm" in by_kind:
        gemm = by_kind["gemm"]
        lines.append(f"Autotuned GEMMs: {gemm.speedup.min():.2f}x-{gemm.speedup.max():.2f}x the default at these "
                     f"shapes, {gemm.current_us.sum() / gemm.route_us.sum():.2f}x over them together.")
    return lines


def _setup(meta: dict) -> str:
    versions = meta.get("versions", {})
    torch_version = (f"torch {versions['torch']}, triton as shipped with it" if versions.get("torch")
                     else f"versions not recorded ({meta.get('recovered_from', 'meta.json has none')})")
    return (f"{versions.get('gpu')}; {torch_version}; {meta.get('note')}; "
            f"{meta.get('size')} px, {meta.get('steps')} steps, batch 4 (UNet batch 8 with CFG); peaks measured in "
            "each run on 8192³ products")


def _lowbit_head(path: str, meta: dict, with_classes: bool, setup_shown: bool) -> str:
    """A run's heading, setup (unless the block's common line gave it), measured peaks, commands and
    findings (those read from its kernel classes only when its classes table is shown)."""
    peaks = ", ".join(f"{name} {meta[key]:.0f} {unit}" for name, key, unit in (
        ("bf16", "bf16_matmul_tflops", "TFLOP/s"), ("fp8", "fp8_matmul_tflops", "TFLOP/s"),
        ("int8", "int8_matmul_tops", "TOPS")) if meta.get(key))
    commands = (f"`{meta['warm_cache_command']}`, then " if meta.get("warm_cache_command") else "") + f"`{meta.get('command')}`"
    findings = "\n".join(f"- {line}" for line in tables.lowbit_findings(path, with_classes))
    setup = "" if setup_shown else _setup(meta) + ". "
    return (f"### `{Path(path).parent.name}`: {meta.get('machine')}\n\n{setup}Peaks: {peaks}. "
            f"Commands: {commands}.\n\n{findings}")


def _variants_markdown(variants, reference: str) -> str:
    """The variants table, paired columns in one cell (step / end to end, PSNR / SSIM) to stay narrow."""
    def pair(a, b, fmt_a, fmt_b):
        return [f"{fmt_a.format(x)} / {fmt_b.format(y)}" if x == x else "—" for x, y in zip(variants[a], variants[b])]

    def column(name, fmt):
        return [fmt.format(v) if v == v else "—" for v in variants[name]]

    shown = {"variant": variants.variant, "UNet ms/step": column("UNet ms/step", "{:.2f}"),
             "s/image": column("s/image", "{:.3f}"),
             "speedup vs best 16-bit, step / e2e": pair("step speedup vs best 16-bit", "e2e speedup vs best 16-bit",
                                                        "{:.2f}x", "{:.2f}x"),
             "UNet MB": column("UNet MB", "{:.0f}"), "peak MB": column("peak MB", "{:.0f}")}
    for what in ("image", "latent"):
        psnr, ssim = f"vs_{reference}_{what}_psnr_db", f"vs_{reference}_{what}_ssim"
        if psnr in variants:
            shown[f"{what} PSNR dB / SSIM vs {reference}"] = pair(psnr, ssim, "{:.2f}", "{:.4f}")
    shown["status"] = variants.get("status", pd.Series(index=variants.index, dtype=object))
    return _cells(pd.DataFrame(shown), {})


def _conv_rates_part(path: str, conv_csv: Path, fp8_shown: bool) -> tuple[list[str], bool]:
    """The run's 3x3 conv rates: the fp8 columns (first run only), the int8 table, or why none."""
    conv = pd.read_csv(conv_csv)
    failed = conv[~conv.status.eq("ok")]
    if len(failed) == len(conv):
        first = failed.status.iloc[0].splitlines()[0]
        return [f"3x3 conv rates: every shape failed (`{first}`; `conv_rates.csv`)."], fp8_shown
    parts = []
    if not fp8_shown and "triton_fp8_tflops" in conv:
        keep = ["hw", "cin", "cout", "stride", "cudnn_fp16_tflops", "triton_fp8_tflops", "triton_fp16_tflops",
                "fp8_gemm_same_flops_tflops", "fp8_kernel_vs_simulation_rel_err", "fp8_vs_fp16_conv_rel_err"]

        def label(column: str) -> str:
            return column.replace("_tflops", " TFLOP/s").replace("_", " ")

        fp8 = conv[conv.status.eq("ok")][keep]
        fp8_digits = {label(c): "{:.0f}" if c.endswith("tflops") else "{:.4f}" for c in keep[4:]}
        fp8.columns = [label(c) for c in fp8.columns]
        parts.append("3x3 convolutions alone (batch 8, channels last; `conv_rates.csv`):\n\n" + _cells(fp8, fp8_digits))
        fp8_shown = True
    int8 = tables.int8_conv_table(path)
    if not int8.empty:
        int8 = int8.drop(columns=[c for c in int8.columns if c.endswith("rel err")])  # in the findings
        int8_digits = {"int8 kernel TOPS": "{:.0f}", "share of int8 peak": "{:.0%}", "cuDNN fp16 TFLOP/s": "{:.0f}",
                       "int8 / cuDNN fp16": "{:.2f}x", "int8 GEMM same ops TOPS": "{:.0f}"}
        parts.append("3x3 convolutions alone in int8 (batch 8, channels last; `conv_rates.csv`; per UNet call: "
                     "from a meta-device trace):\n\n" + _cells(int8, int8_digits))
    return parts, fp8_shown


if __name__ == "__main__":
    if sys.argv[1:] == ["--lowbit"]:
        print(lowbit_markdown(), end="")
    elif sys.argv[1:2] == ["--collect-quality"] and len(sys.argv) == 3:
        collect_quality(Path(sys.argv[2]))
    elif sys.argv[1:] == ["--routes"]:
        print(routes_markdown(), end="")
    elif sys.argv[1:] == ["--kernels"]:
        print(kernel_limits_markdown(), end="")
    elif sys.argv[1:] == ["--targets"]:
        print(targets_markdown(sorted(str(p) for p in RESULTS.glob("gpu_run*/results.csv"))))  # not onnx_cpu's table
    else:
        print(current_markdown(), end="")
