"""Fill the torch.compile (Inductor) cache for benchmark variants in parallel, before a timed run.

A cold compile of the SD 1.5 UNet takes 100-130 s per batch size and uses a fraction of a
16-core host, so a benchmark with a dozen distinct compiled graphs spends most of its wall
time compiling one graph after another. Each job here is one benchmark process (warm-up and one
repeat, no FLOP count) for a list of variants; the jobs run at the same time, so the cold
compiles overlap. The timed run that follows, with the same TORCHINDUCTOR_CACHE_DIR, loads the
compiled graphs from the cache. Its timings exclude compilation either way (warm-up): only
its wall time shrinks. No library does this fan-out, hence the few lines below.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "gpu_benchmark.py"


def parse(argv=None):
    """This tool's own options; every other option (--shape, --batches, --tokenizer, ...) goes to each job's
    benchmark command unchanged, so the two tools cannot disagree about them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Other options are passed to benchmarks/gpu_benchmark.py.")
    parser.add_argument("--jobs", nargs="+", required=True,
                        help="one process each: comma-separated group:variant names")
    parser.add_argument("--deadline", type=float, default=0, help="seconds; jobs still running are stopped")
    parser.add_argument("--out", required=True)
    return parser.parse_known_args(argv)


def job_command(variants: list[str], benchmark_options: list[str], out: Path) -> list[str]:
    """The benchmark command of one job: only its variants, warm-up plus one repeat, no FLOP count."""
    return [sys.executable, str(BENCHMARK), *benchmark_options, "--warmup", "1", "--repeats", "1", "--no-flops",
            "--extra", *variants, "--variants", "none", "--out", str(out)]


def compile_threads(n_jobs: int) -> int:
    """Inductor's compile workers per job, so that all jobs together about fill the host's cores."""
    return max(2, (os.cpu_count() or 2) // n_jobs)


def main(argv=None) -> int:
    args, benchmark_options = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(compile_threads(len(args.jobs))))
    started = time.time()
    running = {}
    for index, job in enumerate(args.jobs):
        job_out = out / f"job{index}"
        command = job_command(job.split(","), benchmark_options, job_out)
        log = open(out / f"job{index}.log", "w")
        running[index] = (job, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    failed = 0
    for index, (job, process, log) in running.items():
        left = args.deadline - (time.time() - started) if args.deadline else None
        try:
            code = process.wait(timeout=max(left, 0) if left is not None else None)
        except subprocess.TimeoutExpired:
            process.terminate()  # Inductor writes cache entries atomically: a stopped job leaves none half-done
            code = f"stopped at the {args.deadline:.0f} s deadline"
            process.wait()
        log.close()
        failed += code != 0
        print(f"job{index} [{job}]: {'ok' if code == 0 else code}, {time.time() - started:.0f} s", flush=True)
    return 1 if failed else 0
