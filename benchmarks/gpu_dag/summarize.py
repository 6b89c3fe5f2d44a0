"""Tables of a GPU smoke run (benchmarks/gpu_dag/smoke.sh) from its committed evidence, and the
GPU-hours the full config/sd15.yaml would take by the same measurements.

    python benchmarks/gpu_dag/summarize.py docs/gpu-run            # print the blocks
    python benchmarks/gpu_dag/summarize.py docs/gpu-run --write    # rewrite them in docs/gpu-run/README.md,
                                                                   # README.md and docs/diffc.md

Reads docs/gpu-run/evidence/ (the unpacked evidence.tar.gz: Snakemake's per-job benchmark tsvs,
manifests, provenance, rd.csv, the run's logs) and the committed benchmark runs in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from sdsqueeze.accel.measure import committed_results  # noqa: E402

# A stage is a rule: its jobs' benchmark tsvs sit in results/benchmarks/<folder>/...
STAGE_OF_FOLDER = {"models": "materialize_model", "generate": "generate", "calibration": "calibration_set",
                   "quant": "ptq_state / quant_sizes", "metrics": "metrics", "sweep": "sweep",
                   "diffc": "diffc", "prompts": "prompts"}
COMPARED = ("fp16-sdpa", "fp16-compiled-graphs")  # generation job vs the benchmark harness, same build


def job_table(evidence: Path) -> pd.DataFrame:
    """One row per job: stage, wall seconds, CPU seconds, peak RSS (Snakemake's benchmark tsv)."""
    rows = []
    for tsv in sorted((evidence / "results" / "benchmarks").rglob("*.tsv")):
        parts = tsv.relative_to(evidence / "results" / "benchmarks").parts
        if parts[0] == "accel":
            continue
        record = pd.read_csv(tsv, sep="\t").iloc[0]
        rows.append({"stage": parts[0], "job": "/".join(parts[1:]).removesuffix(".tsv"), "wall_s": record.s,
                     "cpu_s": record.cpu_time, "max_rss_mb": record.max_rss})
    return pd.DataFrame(rows)


def gpu_peaks(evidence: Path) -> dict[str, float]:
    """Per stage folder: the largest CUDA allocator peak any of its jobs recorded (provenance, manifests)."""
    peaks: dict[str, float] = {}
    results = evidence / "results"
    for path in results.rglob("provenance.json"):
        stage = path.relative_to(results).parts[0]
        device = json.loads(path.read_text()).get("device", {})
        if "max_memory_allocated_mb" in device:
            peaks[stage] = max(peaks.get(stage, 0.0), float(device["max_memory_allocated_mb"]))
    for path in (results / "images").rglob("manifest.csv"):
        frame = pd.read_csv(path)
        if (frame.memory_kind == "cuda_max_allocated").all():
            peaks["images"] = max(peaks.get("images", 0.0), float(frame.peak_memory_mb.max()))
    return peaks


def stage_table(evidence: Path) -> pd.DataFrame:
    jobs = job_table(evidence)
    peaks = gpu_peaks(evidence)
    peak_of = {"generate": peaks.get("images"), "diffc": peaks.get("diffc"), "sweep": peaks.get("sweep"),
               "calibration": peaks.get("calibration")}
    table = jobs.groupby("stage").agg(jobs=("job", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                      max_rss_mb=("max_rss_mb", "max")).reset_index()
    table["peak_gpu_mb"] = table.stage.map(peak_of)
    table["stage"] = table.stage.map(lambda s: STAGE_OF_FOLDER.get(s, s))
    return table


def generation_table(evidence: Path) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in sorted((evidence / "results" / "images").rglob("manifest.csv"))]
    manifests = pd.concat(frames, ignore_index=True)
    per_batch = manifests.groupby(["variant", "batch_index"]).first().reset_index()
    return per_batch.groupby("variant").agg(
        images=("batch_index", lambda b: int(len(b) * 0) or None), s_per_image=("seconds", "median"),
        unet_ms_step=("unet_ms_step", "median"), unet_calls=("unet_calls", "median"),
        warmup_s=("warmup_seconds", "first"), peak_gpu_mb=("peak_memory_mb", "max")).drop(columns="images")


def benchmark_ms_per_step(gpu: str = "H200", batch: int = 4) -> dict[str, float]:
    """UNet ms per step of the committed benchmark runs of this GPU type, per variant (batch 4)."""
    out = {}
    for run in committed_results(REPO):
        folder = Path(run).parent
        meta = json.loads((folder / "meta.json").read_text())
        if gpu not in meta["versions"]["gpu"]:
            continue
        frame = pd.read_csv(folder / "results.csv")
        rows = frame[(frame.batch == batch) & (frame.status == "ok")]
        out.update({r.variant: (r.unet_ms_step_median, folder.name) for r in rows.itertuples()})
    return out


def run_facts(evidence: Path) -> dict:
    run = evidence / "run"
    second = (run / "run2.log").read_text() if (run / "run2.log").is_file() else ""
    provenance = json.loads(next((evidence / "results" / "images").rglob("provenance.json")).read_text())
    return {"command": (run / "command.txt").read_text().strip(), "seconds": float((run / "run1.seconds").read_text()),
            "rerun_nothing_to_do": "Nothing to be done" in second, "device": provenance["device"],
            "packages": provenance["packages"], "python": provenance["python"]}


def markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}f")
