"""Print docs/benchmarks.md's tables from the committed GPU results (no number typed by hand).

    python benchmarks/render_tables.py docs/benchmarks/gpu_run*_results.csv
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sdsqueeze.accel import benchtables  # noqa: E402

COLUMNS = ["variant", "s/image", "UNet ms/step", "peak MB", "UNet MB (memory)",
           "speedup vs fp16 classic", "speedup vs fp16 SDPA eager",
           "memory reduction vs fp16 classic", "memory reduction vs fp16 SDPA eager",
           "share of bf16 matmul rate"]

if __name__ == "__main__":
    rows, flops = benchtables.load(sys.argv[1:])
    table = benchtables.derived(rows, flops)
    for batch, group in table.groupby("batch"):
        ok = group[group.status == "ok"].sort_values("s/image", ascending=False)
        print(f"\n#### Batch {batch}\n")
        print(benchtables.markdown(ok[COLUMNS]))
        failed = group[group.status != "ok"]
        if not failed.empty:
            print("\nNot timed:\n")
            for r in failed.itertuples():
                print(f"- `{r.variant}`: {r.status[:160]}")
