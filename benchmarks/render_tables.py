"""Print docs/benchmarks.md's generated tables from the committed GPU results (no number typed by hand).

    python benchmarks/render_tables.py                  # the current table of each GPU type
    python benchmarks/render_tables.py --targets        # the study's targets, per committed run
    python benchmarks/render_tables.py --lowbit         # the static fp8/int8 study (docs/lowbit.md)

The current runs per GPU type are listed in benchmarks/results/current.yaml; tests/unit/test_docs.py
re-renders the block between the markers in docs/benchmarks.md and compares.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import yaml  # noqa: E402

from sdbench import tables  # noqa: E402 - sdbench sits beside this script
from sdsqueeze.accel import measure  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


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
    """docs/lowbit.md's tables: each current run that timed the static 8-bit builds beside the best
    16-bit build: its variants, the kernel classes of its profiles, its 3x3 conv shapes."""
    root = results.parents[1]
    paths = [str(root / p) for gpu_paths in current_runs(results).values() for p in gpu_paths]
    parts = []
    for path in tables.lowbit_runs(paths):
        meta = measure.meta_for(path)
        versions = meta.get("versions", {})
        run = Path(path).parent.name
        head = (f"### `{run}`: {meta.get('machine')}\n\n{versions.get('gpu')}; torch {versions.get('torch')}, "
                f"triton as shipped with it; {meta.get('note')}; {meta.get('size')} px, {meta.get('steps')} steps, "
                f"batch 4 (UNet batch 8 with CFG). Measured peaks: bf16 {meta.get('bf16_matmul_tflops'):.0f}, "
                f"fp8 {meta.get('fp8_matmul_tflops'):.0f} TFLOP/s"
                + (f", int8 {meta['int8_matmul_tops']:.0f} TOPS" if meta.get("int8_matmul_tops") else "")
                + " (8192³ products). Command: "
                f"`{meta.get('command')}`.")
        variants = tables.lowbit_table(path).drop(columns=["compiled"])
        reference = meta.get("quality_reference", "fp16-sdpa")
        variants.columns = [_quality_label(c, reference) for c in variants.columns]
        digits = {c: "{:.2f}" for c in variants.columns if c.startswith("UNet ms") or "PSNR" in c}
        digits.update({c: "{:.4f}" for c in variants.columns if "SSIM" in c})
        digits.update({"s/image": "{:.3f}", "step speedup vs best 16-bit": "{:.2f}x",
                       "e2e speedup vs best 16-bit": "{:.2f}x", "UNet MB": "{:.0f}", "peak MB": "{:.0f}"})
        classes = tables.kernel_class_table(path)
        class_digits = {"GPU ms per generation": "{:.1f}", "TFLOP/s": "{:.0f}",
                        "share of that precision's peak": "{:.0%}"}
        findings = "\n".join(f"- {line}" for line in tables.lowbit_findings(path))
        parts.append(head + "\n\n" + findings + "\n\n" + _cells(variants, digits) + "\n\nKernel classes (one profiled generation: "
                     "51 CFG UNet calls, VAE decode, text encoder):\n\n" + _cells(classes, class_digits))
        conv_csv = Path(path).with_name("conv_rates.csv")
        if conv_csv.is_file():
            import pandas as pd

            conv = pd.read_csv(conv_csv)
            keep = ["hw", "cin", "cout", "stride", "cudnn_fp16_tflops", "triton_fp8_tflops", "triton_fp16_tflops",
                    "fp8_gemm_same_flops_tflops", "fp8_kernel_vs_simulation_rel_err", "fp8_vs_fp16_conv_rel_err",
                    "triton_int8_tops", "int8_gemm_same_ops_tops", "int8_kernel_vs_simulation_rel_err",
                    "int8_vs_fp16_conv_rel_err"]  # int8 columns: runs from the int8 build on

            def label(column: str) -> str:
                return column.replace("_tflops", " TFLOP/s").replace("_tops", " TOPS").replace("_", " ")

            conv = conv[[c for c in keep if c in conv]]
            conv_digits = {c: "{:.0f}" for c in conv.columns if c.endswith(("tflops", "tops"))}
            conv_digits.update({c: "{:.4f}" for c in conv.columns if c.endswith("rel_err")})
            conv.columns = [label(c) for c in conv.columns]
            conv_digits = {label(c): f for c, f in conv_digits.items()}
            parts.append("3x3 convolutions alone (batch 8, channels last; `conv_rates.csv`):\n\n"
                         + _cells(conv, conv_digits))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--lowbit"]:
        print(lowbit_markdown(), end="")
    elif sys.argv[1:] == ["--targets"]:
        print(targets_markdown(sorted(str(p) for p in RESULTS.glob("*/results.csv"))))
    else:
        print(current_markdown(), end="")
