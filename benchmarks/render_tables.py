"""Print docs/benchmarks.md's tables from the committed GPU results (no number typed by hand).

    python benchmarks/render_tables.py docs/benchmarks/gpu_run*_results.csv
    python benchmarks/render_tables.py --targets docs/benchmarks/gpu_run*_results.csv   # per run
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sdsqueeze.accel import benchtables  # noqa: E402

COLUMNS = ["variant", "s/image", "UNet ms/step", "peak MB", "UNet MB (memory)",
           "speedup vs fp16 classic", "speedup vs fp16 SDPA eager",
           "memory reduction vs fp16 classic", "memory reduction vs fp16 SDPA eager",
           "share of bf16 matmul rate"]


def print_targets(paths: list[str]) -> None:
    table = benchtables.targets_by_run(paths)
    table.insert(1, "machine", [benchtables.machine_of(p) for p in benchtables.in_run_order(paths)])
    table = table.drop(columns="device")
    for column in table.columns:
        if column.startswith(("b1 vs", "b1 best vs", "b4 best vs")):
            table[column] = table[column].map(lambda v: f"{v:.2f}x" if v == v else "—")
        elif column == "b4 share":
            table[column] = table[column].map(lambda v: f"{v:.1%}" if v == v else "—")
        elif column in ("b1 s/image", "matmul TFLOP/s"):
            digits = 3 if column == "b1 s/image" else 0
            table[column] = table[column].map(lambda v: f"{v:.{digits}f}" if v == v else "—")
    print(table.fillna("—").to_markdown(index=False))


def print_tables(paths: list[str]) -> None:
    for machine, runs in benchtables.by_machine(paths).items():
        print(f"\n### {machine}: {', '.join(Path(r).name for r in runs)}")
        print_machine_tables(runs)


def print_machine_tables(paths: list[str]) -> None:
    rows, flops = benchtables.load(paths)
    table = benchtables.derived(rows, flops)
    for batch, group in table.groupby("batch"):
        ok = group[group.status == "ok"].sort_values("s/image", ascending=False)
        print(f"\n#### Batch {batch}\n")
        # a run without fp16 classic or without a FLOP count (--no-flops) has no such columns
        print(benchtables.markdown(ok[[c for c in COLUMNS if c in ok]]))
        failed = group[group.status != "ok"]
        if not failed.empty:
            print("\nNot timed:\n")
            for status, same in failed.groupby("status", sort=False):  # one line per reason
                names = ", ".join(f"`{v}`" for v in same.variant)
                print(f"- {names}: {status[:160]}")


if __name__ == "__main__":
    if sys.argv[1] == "--targets":
        print_targets(sys.argv[2:])
    else:
        print_tables(sys.argv[1:])
