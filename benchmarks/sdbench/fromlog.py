"""Rebuild a run's result files from its console log, for a call that ended (its device time spent)
before it copied them back: kernel_rates.csv from the ``attention`` and ``groupnorm`` lines,
results.csv from the ``[variant bN] ok ...`` lines, meta.json from the peak, rate and FLOP lines.
Values are what the log printed (three significant digits for the kernel rates); what the log does
not hold (versions, profiles, quality against the reference) stays absent, and meta.json says so.

    python -m sdbench.fromlog benchmarks/results/gpu_runN/bench.log --command '...' --machine '...'
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

VARIANT_LINE = re.compile(r"^\[(?P<variant>[^ \]]+) b(?P<batch>\d+)\] ok (?P<s>[\d.]+) s/img, (?P<ms>[\d.]+) ms/step, "
                          r"(?P<mb>[\d.]+) MB, warm-up (?P<warm>[\d.]+) s$")
PEAKS = {"bf16_matmul_tflops": r"bf16 matmul ([\d.]+) TFLOP/s", "fp8_matmul_tflops": r"^fp8 matmul ([\d.]+) TFLOP/s",
         "int8_matmul_tops": r"^int8 matmul ([\d.]+) TOPS", "copy_gbs": r"^copy ([\d.]+) GB/s",
         "exp2_tera_per_s": r"exp2 ([\d.]+) T/s"}


def fields(line: str) -> dict:
    """``kind key value, key value, ...`` -> {key: value}, numbers as floats."""
    out = {}
    for pair in line.split(" ", 1)[1].split(", "):
        key, value = pair.split(" ", 1)
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def _build_columns(variant: str) -> dict:
    """The variant's settings columns, as the harness writes them, from its definition (config/accel.yaml)."""
    from types import SimpleNamespace

    from .harness import _row_base, _spec
    from .run import GROUPS

    builds = {name: build for group in GROUPS.values() for name, build in group.items()}
    settings = SimpleNamespace(steps=50, size=512, batches=[4])  # the log's run: 512 px, 50 steps, batch 4
    return _row_base(_spec(variant, builds.get(variant, {}), settings))


def parse(log: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(kernel rates, variant rows, meta fields) of one bench.log."""
    lines = log.splitlines()
    rates = [{**fields(line), "kind": line.split(" ", 1)[0]} for line in lines
             if line.startswith(("attention ", "groupnorm "))]
    rows = [{**_build_columns(m["variant"]), "batch": int(m["batch"]), "status": "ok", "s_per_image": float(m["s"]),
             "unet_ms_step_median": float(m["ms"]), "peak_memory_mb": float(m["mb"]), "warmup_s": float(m["warm"]),
             "unet_bytes_memory": float("nan")}
            for m in map(VARIANT_LINE.match, lines) if m]
    meta = {}
    for key, pattern in PEAKS.items():
        found = next((re.search(pattern, line) for line in lines if re.search(pattern, line)), None)
        if found:
            meta[key] = float(found.group(1))
    device = next((line for line in lines if line.startswith("device ")), "")
    if device:
        meta["versions"] = {"gpu": device.removeprefix("device ").split(";")[0]}
    flops = next((line for line in lines if line.startswith("flops: ")), None)
    if flops:
        meta["flops"] = json.loads(flops.removeprefix("flops: "))
    return pd.DataFrame(rates), pd.DataFrame(rows).drop_duplicates("variant", keep="last"), meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--command", required=True, help="the benchmark command the log is of")
    parser.add_argument("--machine", required=True)
    parser.add_argument("--extra", default="{}", help="JSON merged into meta.json (settings of the command)")
    args = parser.parse_args(argv)
    rates, rows, meta = parse(args.log.read_text())
    folder = args.log.parent
    if not rates.empty:
        rates.to_csv(folder / "kernel_rates.csv", index=False)
    rows.to_csv(folder / "results.csv", index=False)
    meta = {**json.loads(args.extra), **meta, "command": args.command, "machine": args.machine, "run": folder.name,
            "recovered_from": f"{args.log.name}: the call ended before its result files were copied back; "
                              "versions other than the GPU, profiles and quality columns were not in the log"}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
