"""UNet milliseconds per denoising step on this CPU: PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime
int8 (dynamic; static QDQ), at the embedded model's size and at SD 1.5's architecture at 256 px.

    nice python benchmarks/onnx_cpu.py                     # measure, write benchmarks/results/onnx_cpu/
    python benchmarks/onnx_cpu.py --table                  # print docs/onnx.md's generated table

Weights are seeded (sdsqueeze.models.build_sd_components; nothing is downloaded): the timings
depend on the architecture and the input size, not on the weights' values. One step is one UNet
call on a guided batch of one prompt (batch 2: [uncond; cond]), as the pipeline makes it. Each
runtime is warmed up (the first calls are excluded), then timed ``--repeats`` times; the table
gives the median wall time and its spread (min-max), the median process CPU time (all threads; what
other jobs on a shared CPU cannot inflate) and the 1-minute load average at each measurement. Static int8 is calibrated on seeded random UNet inputs
here (its speed does not depend on the ranges); the workflow's static variant uses a real
calibration set. CPU wall clock on a shared machine: indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# Waiting threads sleep instead of spinning (read by torch's OpenMP at import; onnxruntime's sessions
# get the same below): on a CPU shared with other jobs a spinning thread burns the time slice its
# partner needs, which made one run's wall times 100x the CPU time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = Path(__file__).resolve().parent / "results" / "onnx_cpu"
RUNTIMES = ("pytorch-fp32", "ort-fp32", "ort-int8-dynamic", "ort-int8-static")


def models():
    """name -> (unet builder, image size in pixels): the embedded model's and SD 1.5's UNet."""
    import torch

    from sdsqueeze.models import SD15_ARCHITECTURE, TinySpec, build_sd_components

    def embedded():
        torch.manual_seed(0)
        spec = TinySpec()
        return build_sd_components(spec.architecture(), spec.image_size)[0]

    def sd15():
        torch.manual_seed(0)
        return build_sd_components(SD15_ARCHITECTURE, 256)[0]

    return {"embedded": (embedded, TinySpec().image_size), "sd15-arch": (sd15, 256)}


def time_calls(call, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU milliseconds of each timed call. On a CPU shared with other jobs the wall
    clock includes waiting for a core; the CPU time (all threads of this process) does not."""
    for _ in range(warmup):
        call()
    wall, cpu = [], []
    for _ in range(repeats):
        began, cpu_began = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - began) * 1e3)
        cpu.append((time.process_time() - cpu_began) * 1e3)
    return wall, cpu


def static_calibration(unet, latent: int, batches: int = 2) -> dict:
    """Seeded random UNet inputs in the calibration set's layout (speed only, see the docstring)."""
    import torch

    generator = torch.Generator().manual_seed(1)
    n = 2 * batches
    return {"sample": torch.randn((n, unet.config.in_channels, latent, latent), generator=generator),
            "timestep": torch.linspace(50, 950, n),
            "cond": torch.randn((n, 77, unet.config.cross_attention_dim), generator=generator),
            "uncond": torch.randn((n, 77, unet.config.cross_attention_dim), generator=generator)}


def measure_model(name: str, build, image_size: int, runtimes: list[str], threads: int, warmup: int,
                  repeats: int, work: Path) -> list[dict]:
    import torch
    from safetensors.torch import save_file

    from sdsqueeze.accel import onnxrt

    unet = build().eval()
    latent = image_size // 8
    inputs = onnxrt.example_inputs(unet, latent, latent, batch=2)
    rows = []

    def record(runtime, timed, file_bytes, prepare_seconds):
        times, cpu = timed
        rows.append({"model": name, "image_px": image_size, "latent": latent, "batch": 2, "runtime": runtime,
                     "threads": threads, "median_ms": statistics.median(times), "min_ms": min(times),
                     "max_ms": max(times), "cpu_median_ms": statistics.median(cpu), "repeats": len(times),
                     "file_mb": file_bytes / 2**20, "prepare_s": prepare_seconds,
                     "load_average": os.getloadavg()[0]})
        print(f"{name} {runtime}: {statistics.median(times):.1f} ms/step", file=sys.stderr, flush=True)

    if "pytorch-fp32" in runtimes:
        with torch.inference_mode():
            times = time_calls(lambda: unet(*inputs, return_dict=False), warmup, repeats)
        record("pytorch-fp32", times, sum(p.numel() * 4 for p in unet.parameters()), 0.0)
    fp32 = work / name / "fp32"
    fp32.mkdir(parents=True)
    began = time.perf_counter()
    onnxrt.export_unet(unet, fp32 / onnxrt.MODEL_FILE, latent, latent)
    exported = time.perf_counter() - began
    calibration = work / name / "calibration.safetensors"
    save_file(static_calibration(unet, latent), str(calibration))
    unet = None  # frees the PyTorch weights before the ONNX sessions load
    paths = {"ort-fp32": (fp32, exported)}
    for mode in ("dynamic", "static"):
        runtime = f"ort-int8-{mode}"
        if runtime not in runtimes:
            continue
        folder = work / name / mode
        folder.mkdir()
        began = time.perf_counter()
        onnxrt.quantize(fp32 / onnxrt.MODEL_FILE, folder / onnxrt.MODEL_FILE, mode,
                        str(calibration) if mode == "static" else None)
        paths[runtime] = (folder, time.perf_counter() - began)
    for runtime, (folder, seconds) in paths.items():
        if runtime not in runtimes:
            continue
        ort_session, _ = onnxrt.session(folder / onnxrt.MODEL_FILE, threads, spinning=False)
        times = time_calls(lambda s=ort_session: onnxrt.run_session(s, *inputs), warmup, repeats)
        record(runtime, times, onnxrt.file_bytes(folder), seconds)
        del ort_session
    return rows


def versions(threads: int, command: str) -> dict:
    import onnx
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "threads": threads, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "weights": "seeded (build_sd_components), not pretrained",
            "command": command}


def table_markdown(results: Path = RESULTS) -> str:
    """The committed run as one table: ms/step (median, min-max) per model and runtime, with each
    runtime's speed-up over PyTorch fp32, the model file size and the export/quantization cost."""
    import pandas as pd

    rows = pd.read_csv(results / "results.csv")
    meta = json.loads((results / "meta.json").read_text())
    base = rows[rows.runtime == "pytorch-fp32"].set_index("model").median_ms
    cpu_base = rows[rows.runtime == "pytorch-fp32"].set_index("model").cpu_median_ms
    out = pd.DataFrame({
        "UNet": rows.model + " (" + rows.image_px.astype(str) + " px)",
        "runtime": rows.runtime,
        "ms/step (median)": rows.median_ms.map(lambda v: f"{v:.1f}"),
        "min-max": [f"{a:.1f}-{b:.1f}" for a, b in zip(rows.min_ms, rows.max_ms)],
        "vs PyTorch fp32": [f"{base[m] / v:.2f}x" for m, v in zip(rows.model, rows.median_ms)],
        "CPU ms/step (median)": rows.cpu_median_ms.map(lambda v: f"{v:.1f}"),
        "CPU vs PyTorch fp32": [f"{cpu_base[m] / v:.2f}x" for m, v in zip(rows.model, rows.cpu_median_ms)],
        "load avg": rows.load_average.map(lambda v: f"{v:.1f}"),
        "file MB": rows.file_mb.map(lambda v: f"{v:.1f}"),
        "export/quantize s": rows.prepare_s.map(lambda v: "—" if v == 0 else f"{v:.0f}"),
    })
    caption = (f"{meta['cpu']}, {meta['threads']} threads; torch {meta['torch']}, onnxruntime "
               f"{meta['onnxruntime']}; weights {meta['weights']}; batch 2 (one guided prompt); "
               f"{int(rows.repeats.iloc[0])} timed repeats after warm-up. From `{meta['command']}`.")
    return caption + "\n\n" + out.to_markdown(index=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="print the markdown table of the committed run")
    parser.add_argument("--models", nargs="+", default=list(models()), choices=list(models()))
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    # onnxruntime's static calibration (MinMax) keeps every intermediate tensor of the calibration
    # batches: for SD 1.5's UNet at 256 px that passed 16 GB and was killed for memory on this
    # 24 GB machine, so static int8 is measured at the embedded size only by default.
    parser.add_argument("--static-models", nargs="*", default=["embedded"], choices=list(models()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.table:
        print(table_markdown(args.out), end="")
        return 0
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    given = [a for a in (argv if argv is not None else sys.argv[1:])]
    if "--out" in given:  # where the files went is not part of how they were measured
        at = given.index("--out")
        del given[at : at + 2]
    command = " ".join(["nice python benchmarks/onnx_cpu.py", *given])
    (args.out / "meta.json").write_text(json.dumps(versions(args.threads, command), indent=2) + "\n")
    with tempfile.TemporaryDirectory() as work:
        for name in args.models:
            build, size = models()[name]
            runtimes = [r for r in args.runtimes if r != "ort-int8-static" or name in args.static_models]
            rows += measure_model(name, build, size, runtimes, args.threads, args.warmup, args.repeats, Path(work))
            pd.DataFrame(rows).to_csv(args.out / "results.csv", index=False)  # each model as it completes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
