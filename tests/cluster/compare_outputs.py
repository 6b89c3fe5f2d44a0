"""Byte-for-byte comparison of two runs' results/ (a local run and a cluster run).

Compared: every image PNG and latents file, the prompt set, per-image and summary metrics, and
the manifests without their timing columns. Not compared, because they record wall time,
memory or the host: provenance.json, timing.csv, benchmarks/, the report's HTML and figures.
Usage: python compare_outputs.py [--images-only] LOCAL_DIR CLUSTER_DIR   (exit 1 on any difference)
(--images-only: just the generation stage's outputs, for a run of the `generate_all` target.)
"""

import csv
import hashlib
import sys
from pathlib import Path

EXACT = ["results/images/**/*.png", "results/images/**/latents.safetensors", "results/prompts/*.csv",
         "results/metrics/*/per_image/*.csv", "results/metrics/*/summary.csv", "results/report/summary.csv"]
MANIFESTS = "results/images/**/manifest.csv"
TIMING_COLUMNS = {"seconds", "cpu_seconds", "warmup_seconds", "unet_ms_step", "peak_memory_mb", "memory_kind"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_without_timing(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def relative_files(root: Path, pattern: str) -> set[str]:
    return {str(p.relative_to(root)) for p in root.glob(pattern) if p.is_file()}


def compare(a: Path, b: Path, images_only: bool = False) -> list[str]:
    problems, n_compared = [], 0
    exact = [p for p in EXACT if p.startswith("results/images/")] if images_only else EXACT
    for pattern, same in [(p, lambda x, y: digest(x) == digest(y)) for p in exact] + \
                         [(MANIFESTS, lambda x, y: manifest_without_timing(x) == manifest_without_timing(y))]:
        files_a, files_b = relative_files(a, pattern), relative_files(b, pattern)
        if not files_a:
            problems.append(f"no files match {pattern} in {a}")
        for missing in sorted(files_a ^ files_b):
            problems.append(f"only in one run: {missing}")
        for rel in sorted(files_a & files_b):
            n_compared += 1
            if not same(a / rel, b / rel):
                problems.append(f"differs: {rel}")
    print(f"compared {n_compared} files between {a} and {b}: {len(problems)} problem(s)")
    return problems


if __name__ == "__main__":
    args = sys.argv[1:]
    images_only = "--images-only" in args
    local_dir, cluster_dir = [Path(a) for a in args if a != "--images-only"]
    found = compare(local_dir, cluster_dir, images_only)
    for line in found:
        print("  " + line)
    sys.exit(1 if found else 0)
