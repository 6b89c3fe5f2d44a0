"""Print docs/benchmarks.md's generated tables from the committed GPU results (no number typed by hand).

    python benchmarks/render_tables.py                  # the current table of each GPU type
    python benchmarks/render_tables.py --targets        # the study's targets, per committed run

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


if __name__ == "__main__":
    if sys.argv[1:] == ["--targets"]:
        print(targets_markdown(sorted(str(p) for p in RESULTS.glob("*/results.csv"))))
    else:
        print(current_markdown(), end="")
