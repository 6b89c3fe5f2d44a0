"""Measurement primitives of the acceleration benchmark and the ratios the report shows.

Timing: CUDA events on a GPU (host clock on the CPU); per UNet step, events recorded by forward
hooks on ``pipe.unet`` (outside any compiled region). FLOPs of one UNet step come from
``torch.utils.flop_counter``. The ratios (speedup, memory reduction, share of the measured matmul
rate) are computed from a run's results.csv and the meta.json beside it; the same code feeds the
report and the tables of docs/benchmarks.md, so no number is typed by hand. The harness that
drives a benchmark run lives in benchmarks/ (outside the package).
"""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

import pandas as pd
import torch


class Clock:
    """CUDA events on a GPU, the host clock (after nothing to wait for) on the CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, start, end) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end)
        return (end - start) * 1e3


class UNetStepTimer:
    """Forward hooks on pipe.unet marking each call's start and end."""

    def __init__(self, unet, clock: Clock):
        self.clock, self.marks = clock, []
        self._handles = [
            unet.register_forward_pre_hook(lambda m, a: self.marks.append([clock.mark(), None])),
            unet.register_forward_hook(lambda m, a, o: self.marks[-1].__setitem__(1, clock.mark())),
        ]

    def durations_ms(self) -> list[float]:
        return [self.clock.elapsed_ms(s, e) for s, e in self.marks]

    def remove(self):
        for h in self._handles:
            h.remove()


def unet_inputs(pipe, batch: int, size: int):
    unet, param = pipe.unet, next(pipe.unet.parameters())
    rows = 2 * batch  # classifier-free guidance: conditional and unconditional in one call
    latent = size // pipe.vae_scale_factor
    sample = torch.randn(rows, unet.config.in_channels, latent, latent, device=param.device, dtype=param.dtype)
    context = torch.randn(rows, 77, unet.config.cross_attention_dim, device=param.device, dtype=param.dtype)
    return sample, torch.tensor(500, device=param.device), context


OP_CLASSES = (("convolution", "convolution"), ("attention", "scaled_dot_product"),
              ("attention", "bmm"), ("linear", "mm"))


def count_flops(pipe, batch: int, size: int) -> dict:
    """FLOPs of one CFG UNet call (by op class), one VAE decode and one text encoding, per batch."""
    from torch.utils.flop_counter import FlopCounterMode

    def classify(counter: FlopCounterMode) -> dict:
        classes: dict[str, int] = {}
        for op, flops in counter.get_flop_counts()["Global"].items():
            name = str(op)
            label = next((c for c, key in OP_CLASSES if key in name), "other")
            classes[label] = classes.get(label, 0) + int(flops)
        return classes

    sample, timestep, context = unet_inputs(pipe, batch, size)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as unet_counter:
            pipe.unet(sample, timestep, context)
        latents = sample[:batch] / pipe.vae.config.scaling_factor
        with FlopCounterMode(display=False) as vae_counter:
            pipe.vae.decode(latents)
        ids = torch.zeros(2 * batch, 77, dtype=torch.long, device=sample.device)
        with FlopCounterMode(display=False) as text_counter:
            pipe.text_encoder(ids)
    by_class = classify(unet_counter)
    return {
        "batch": batch, "unet_step_flops": unet_counter.get_total_flops(), "unet_step_flops_by_class": by_class,
        "vae_decode_flops": vae_counter.get_total_flops(), "text_encoder_flops": text_counter.get_total_flops(),
    }


def matmul_tflops(device: str, n: int = 8192, repeats: int = 20) -> float:
    """Measured bf16 matrix-product rate (random data, median of repeats after warm-up)."""
    if not device.startswith("cuda"):
        return float("nan")
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * n**3 / statistics.median(times) / 1e12


BASELINES = {"fp16 classic": "fp16-classic", "fp16 SDPA eager": "fp16-sdpa"}


CURRENT_RUNS = Path("benchmarks", "results", "current.yaml")


def committed_results(root: str | Path = Path(__file__).resolve().parents[3]) -> list[str]:
    """results.csv of the committed GPU runs that stand for each GPU type now (listed in
    benchmarks/results/current.yaml under ``root``); none in a copy of the workflow without it."""
    import yaml

    listed = Path(root) / CURRENT_RUNS
    if not listed.is_file():
        return []
    runs = [run for gpu_runs in yaml.safe_load(listed.read_text()).values() for run in gpu_runs]
    return [str(Path(root, "benchmarks", "results", run, "results.csv")) for run in runs]


def run_of(results_csv: str | Path) -> str:
    """A committed run's name: the folder holding its results.csv and meta.json."""
    return Path(results_csv).parent.name


def in_run_order(paths) -> list[str]:
    """Result files sorted by the number in their run's name (run2 before run10), then by name."""
    def key(path):
        number = re.search(r"(\d+)$", run_of(path))
        return (int(number.group(1)) if number else -1, run_of(path))

    return sorted(map(str, paths), key=key)


def meta_for(results_csv: str | Path) -> dict:
    """The run's meta.json beside its results.csv (every committed run has one)."""
    path = Path(results_csv).with_name("meta.json")
    return json.loads(path.read_text()) if path.is_file() else {}


def machine_of(results_csv: str | Path) -> str:
    """The lent machine a run used (meta's ``machine``: rows of different machines must not be
    merged, even of one GPU model), else the GPU named in its meta, else "this run"."""
    meta = meta_for(results_csv)
    return str(meta.get("machine") or meta.get("versions", {}).get("gpu", "this run"))


def by_machine(results_csvs: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for path in in_run_order(results_csvs):
        groups.setdefault(machine_of(path), []).append(path)
    return groups


def load(results_csvs: list[str]) -> tuple[pd.DataFrame, dict]:
    """All runs' rows; per (variant, batch) the last successful row wins (a later run that fixed
    a failure supersedes it). Each row keeps its own run's measured matmul rate."""
    frames, flops = [], {}
    for order, path in enumerate(in_run_order(results_csvs)):
        meta = meta_for(path)
        frame = pd.read_csv(path)
        frame["run"] = run_of(path)
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
            fmt[column] = fmt[column].map(lambda v, digits=digits: f"{v:.{digits}f}" if pd.notna(v) else "—")
    return fmt.to_markdown(index=False)
