"""Entry point of rule accel_benchmark: benchmarks/gpu_benchmark.py with the config's settings."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import sys
from pathlib import Path

from sdsqueeze import config, io, smk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the harness lives there
from sdbench import run as benchrun  # noqa: E402


def main(snakemake):
    p = snakemake.params
    b = p.bench
    argv = ["--shape", b["shape"], "--device", config.resolve_device(p.device),
            "--size", str(b["size"]), "--steps", str(b["steps"]), "--warmup", str(b["warmup"]),
            "--repeats", str(b["repeats"]), "--seed", str(p.seed), "--time-budget", str(b["time_budget"]),
            "--batches", *map(str, b["batches"]), "--groups", *b["groups"]]
    with io.atomic_dir(snakemake.output[0]) as tmp:
        benchrun.main(argv + ["--out", str(tmp)])


smk.run(snakemake, main)  # noqa: F821
