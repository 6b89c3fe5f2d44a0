"""Tables of the acceleration benchmark: speedup, memory reduction and share of the matmul rate.

Reads the benchmark's results.csv files (one per run) and meta.json beside each; the same code
feeds docs/benchmarks.md and the report section, so no number is typed by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

BASELINES = {"fp16 classic": "fp16-classic", "fp16 SDPA eager": "fp16-sdpa"}
REPO_ROOT = Path(__file__).resolve().parents[3]
COMMITTED_RESULTS = "docs/benchmarks/gpu_run*_results.csv"  # the one place that names where they live


def committed_results(root: str | Path = REPO_ROOT) -> list[str]:
    """The committed GPU runs' results.csv files under ``root``, in run order."""
    return in_run_order(Path(root).glob(COMMITTED_RESULTS))


def in_run_order(paths) -> list[str]:
    """Result files sorted by run number (gpu_run2 before gpu_run10), then by name."""
    def key(path):
        number = re.search(r"run(\d+)", Path(path).name)
        return (int(number.group(1)) if number else -1, Path(path).name)

    return sorted(map(str, paths), key=key)


def meta_for(results_csv: str | Path) -> dict:
    path = Path(str(results_csv).replace("_results.csv", "_meta.json"))
    if not path.is_file():
        path = Path(results_csv).with_name("meta.json")
    if path.is_file():
        return json.loads(path.read_text())
    log = Path(str(results_csv).replace("_results.csv", "_log.txt"))
    return meta_from_log(log) if log.is_file() else {}


def machine_of(results_csv: str | Path) -> str:
    """The lent machine a run used (machines.csv beside the results: rows of different machines
    must not be merged, even of one GPU model), else the GPU named in its meta, else "this run"."""
    path = Path(results_csv)
    run = path.name.replace("_results.csv", "")
    table = path.with_name("machines.csv")
    if table.is_file():
        machines = pd.read_csv(table).set_index("run")["machine"]
        if run in machines:
            return str(machines[run])
    return str(meta_for(path).get("versions", {}).get("gpu", "this run"))


def by_machine(results_csvs: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for path in in_run_order(results_csvs):
        groups.setdefault(machine_of(path), []).append(path)
    return groups


def meta_from_log(log: Path) -> dict:
    """What a run killed at its time limit logged before meta.json was written (the benchmark now
    writes meta.json before the first variant): device, matmul rate (rounded), FLOPs."""
    meta: dict = {"meta_source": f"{log.name} (run killed before writing meta.json)"}
    for line in log.read_text().splitlines():
        device = re.match(r"device (.+); bf16 matmul ([\d.]+) TFLOP/s", line)
        if device:
            meta["versions"] = {"gpu": device.group(1)}
            meta["bf16_matmul_tflops"] = float(device.group(2))
        elif line.startswith("flops: "):
            meta["flops"] = json.loads(line[len("flops: "):])
    return meta


def load(results_csvs: list[str]) -> tuple[pd.DataFrame, dict]:
    """All runs' rows; per (variant, batch) the last successful row wins (a later run that fixed
    a failure supersedes it). Each row keeps its own run's measured matmul rate."""
    frames, flops = [], {}
    for order, path in enumerate(in_run_order(results_csvs)):
        meta = meta_for(path)
        frame = pd.read_csv(path)
        frame["run"] = Path(path).name.replace("_results.csv", "")
        frame["run_order"] = order
        frame["bf16_matmul_tflops"] = meta.get("bf16_matmul_tflops", float("nan"))
        frames.append(frame)
        for entry in meta.get("flops", []):
            flops[int(entry["batch"])] = entry
    rows = pd.concat(frames, ignore_index=True)
    rows["ok"] = rows.status.eq("ok")
    rows = rows.sort_values(["ok", "run_order"]).groupby(["variant", "batch"], as_index=False).last()
    return rows, flops


def derived(rows: pd.DataFrame, flops: dict) -> pd.DataFrame:
    """Per variant and batch: the measured numbers plus ratios against the two baselines."""
    out = []
    for batch, group in rows.groupby("batch"):
        ok = group[group.ok].set_index("variant")
        step_flops = flops.get(int(batch), {}).get("unet_step_flops")
        for r in group.itertuples():
            row = {"variant": r.variant, "batch": int(batch), "status": r.status}
            if r.ok:
                row.update({
                    "s/image": r.s_per_image, "UNet ms/step": r.unet_ms_step_median,
                    "peak MB": r.peak_memory_mb, "UNet MB (memory)": r.unet_bytes_memory / 2**20,
                })
                for label, base in BASELINES.items():
                    if base in ok.index:
                        row[f"speedup vs {label}"] = ok.loc[base, "s_per_image"] / r.s_per_image
                        row[f"memory reduction vs {label}"] = 1 - r.peak_memory_mb / ok.loc[base, "peak_memory_mb"]
                full_steps = not (isinstance(r.deepcache, (int, float)) and r.deepcache > 0)
                if step_flops and full_steps:
                    tflops = step_flops / (r.unet_ms_step_median / 1e3) / 1e12
                    row["UNet TFLOP/s"] = tflops
                    row["share of bf16 matmul rate"] = tflops / r.bf16_matmul_tflops
            out.append(row)
    return pd.DataFrame(out)


def full_work(row) -> bool:
    """50 steps (or the run's default), no feature caching: the rows the 4x and 40% targets take."""
    cached = isinstance(row.deepcache, (int, float)) and row.deepcache > 0
    return not cached and int(row.steps) == 50


def targets_by_run(results_csvs: list[str]) -> pd.DataFrame:
    """Issue 4's targets, each judged inside one run (baseline and candidate timed on one machine,
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
        record = {"run": Path(path).name.replace("_results.csv", ""),
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


def markdown(table: pd.DataFrame) -> str:
    """A GitHub table with sensible rounding."""
    fmt = table.copy()
    for column in fmt.columns:
        if column.startswith(("speedup",)):
            fmt[column] = fmt[column].map(lambda v: f"{v:.2f}x" if pd.notna(v) else "—")
        elif column.startswith(("memory reduction", "share")):
            fmt[column] = fmt[column].map(lambda v: f"{v:.0%}" if pd.notna(v) else "—")
        elif fmt[column].dtype.kind == "f":
            digits = 3 if column == "s/image" else 1
            fmt[column] = fmt[column].map(lambda v: f"{v:.{digits}f}" if pd.notna(v) else "—")
    return fmt.to_markdown(index=False)
