"""What FD-EffNetLite0 costs on a CPU: measured, written to a CSV, rendered into docs/metrics.md.

    python -m sdsqueeze.quality.fdcost measure --images 8 64 -o docs/metrics/fd_effnetlite0_cost.csv
    python -m sdsqueeze.quality.fdcost render docs/metrics/fd_effnetlite0_cost.csv

Process CPU seconds on one torch thread (what the metrics job uses), median of ``--repeats``
repeats: loading the network in a fresh interpreter (timm's import and the weights; torch already
imported, as in the job), its features per 128-px image (PNG decode included), and per variant
the distance with its bootstrap interval (``--resamples``, the config's default 2000). The
job's total for V variants of n images is load + V·n·features + V·distance.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import repro

LOAD_SNIPPET = ("import time, torch; torch.set_num_threads(1); t = time.process_time(); "
                "from sdsqueeze.quality import effnet; effnet.load_effnet_lite0(); "
                "print(time.process_time() - t)")
COLUMNS = ["n_images", "load_cpu_s", "features_cpu_s_per_image", "distance_cpu_s_per_variant", "resamples",
           "repeats", "spread", "cpu", "torch"]


def write_images(folder: Path, n: int, seed: int) -> list[Path]:
    """n smooth seeded 128-px RGB PNGs (the default run's image size)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        coarse = rng.random((16, 16, 3)).repeat(8, axis=0).repeat(8, axis=1)
        pixels = (255 * (0.8 * coarse + 0.2 * rng.random((128, 128, 3)))).astype(np.uint8)
        paths.append(folder / f"{seed}_{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def cpu_seconds(action, *args) -> float:
    start = time.process_time()
    action(*args)
    return time.process_time() - start


def load_seconds() -> float:
    src = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": src, "HF_HUB_OFFLINE": "1"})
    return float(out.stdout.strip().splitlines()[-1])


def measure(sizes: list[int], repeats: int, resamples: int) -> pd.DataFrame:
    import torch

    from .effnet import effnet_features, load_effnet_lite0
    from .evaluate import fd_with_interval

    torch.set_num_threads(1)
    model = load_effnet_lite0()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for n in sizes:
            variant, reference = write_images(Path(scratch), n, seed=1), write_images(Path(scratch), n, seed=2)
            loads, features, distances = [], [], []
            fd_with_interval(*(effnet_features(model, paths) for paths in (variant, reference)),
                             np.arange(n), 0.95, 10, 0)  # warm-up: lazy imports and allocations
            for _ in range(repeats):
                loads.append(load_seconds())
                features.append(cpu_seconds(effnet_features, model, variant) / n)
                a, b = effnet_features(model, variant), effnet_features(model, reference)
                distances.append(cpu_seconds(fd_with_interval, a, b, np.arange(n), 0.95, resamples, 0))
            spread = max((max(x) - min(x)) / np.median(x) for x in (loads, features, distances))
            rows.append({"n_images": n, "load_cpu_s": np.median(loads),
                         "features_cpu_s_per_image": np.median(features),
                         "distance_cpu_s_per_variant": np.median(distances), "resamples": resamples,
                         "repeats": repeats, "spread": spread, "cpu": repro.cpu_name(),
                         "torch": torch.__version__})
    return pd.DataFrame(rows, columns=COLUMNS)


def job_seconds(row, variants: int) -> float:
    """The metrics_distribution job's FD-EffNetLite0 CPU seconds for ``variants`` variants."""
    return row.load_cpu_s + variants * (row.n_images * row.features_cpu_s_per_image + row.distance_cpu_s_per_variant)


def render(table: pd.DataFrame, variants: int = 10) -> str:
    """The Markdown table docs/metrics.md shows (the job's total per ``variants`` variants)."""
    lines = ["| images per variant | load (CPU s) | features (CPU s / image) | distance + bootstrap "
             f"(CPU s / variant) | job total per {variants} variants (CPU s) | spread over repeats |",
             "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.n_images} | {r.load_cpu_s:.2f} | {r.features_cpu_s_per_image:.3f} | "
                     f"{r.distance_cpu_s_per_variant:.2f} ({r.resamples} resamples) | "
                     f"{job_seconds(r, variants):.0f} | {100 * r.spread:.0f}% |")
    first = table.iloc[0]
    lines.append("")
    lines.append(f"Median of {first.repeats} repeats, one torch thread, {first.cpu}, torch {first.torch}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdsqueeze.quality.fdcost", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("measure")
    run.add_argument("--images", type=int, nargs="+", default=[8, 64])
    run.add_argument("--repeats", type=int, default=3)
    run.add_argument("--resamples", type=int, default=2000)
    run.add_argument("-o", "--output", required=True)
    show = commands.add_parser("render")
    show.add_argument("csv")
    args = parser.parse_args(argv)
    if args.command == "measure":
        from ..io import write_csv

        write_csv(args.output, measure(args.images, args.repeats, args.resamples))
    else:
        sys.stdout.write(render(pd.read_csv(args.csv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
