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
    pointwise = []  # 1x1 convolutions (a subset of "convolution"): GEMMs in some builds

    def count_pointwise(module, args, out):
        if module.kernel_size == (1, 1):
            pointwise.append(2 * out.numel() * module.in_channels // module.groups)

    hooks = [m.register_forward_hook(count_pointwise) for m in pipe.unet.modules()
             if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        with FlopCounterMode(display=False) as unet_counter:
            pipe.unet(sample, timestep, context)
        for hook in hooks:
            hook.remove()
        latents = sample[:batch] / pipe.vae.config.scaling_factor
        with FlopCounterMode(display=False) as vae_counter:
            pipe.vae.decode(latents)
        ids = torch.zeros(2 * batch, 77, dtype=torch.long, device=sample.device)
        with FlopCounterMode(display=False) as text_counter:
            pipe.text_encoder(ids)
    by_class = {**classify(unet_counter), "convolution_1x1": sum(pointwise)}
    return {
        "batch": batch, "unet_step_flops": unet_counter.get_total_flops(), "unet_step_flops_by_class": by_class,
        "vae_decode_flops": vae_counter.get_total_flops(), "vae_decode_flops_by_class": classify(vae_counter),
        "text_encoder_flops": text_counter.get_total_flops(),
        "text_encoder_flops_by_class": classify(text_counter),
    }


def matmul_tflops(device: str, n: int = 8192, repeats: int = 20, precision: str = "bf16") -> float:
    """Measured dense matrix-product rate (random data, median of repeats after warm-up): bf16
    ``a @ b``, fp8 e4m3 ``torch._scaled_mm`` with per-tensor scales and bf16 output, or int8
    ``torch._int_mm`` with int32 output (tera-operations per second)."""
    if not device.startswith("cuda"):
        return float("nan")
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    if precision == "fp8":
        a, b = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn).t()  # cuBLASLt: b column-major
        one = torch.ones((), device=device)

        def product():
            return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    elif precision == "int8":
        a = torch.randint(-127, 128, (n, n), device=device, dtype=torch.int8)
        b = torch.randint(-127, 128, (n, n), device=device, dtype=torch.int8).t()  # cuBLASLt: b column-major

        def product():
            return torch._int_mm(a, b)
    else:
        def product():
            return a @ b
    return 2 * n**3 / kernel_seconds(product, repeats) / 1e12


def kernel_seconds(call, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds of ``call()`` on the GPU (CUDA events around each call, after warm-up)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def output_agreement(reference: dict, candidate: dict) -> dict:
    """PSNR and SSIM of a variant's images (and final latents, where both were captured) against
    the reference variant's, same seeds and prompts: how far the build's arithmetic moved them."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from ..quality.images import psnr, ssim

    def to_uint8(images):
        return (images.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    ref_images, images = to_uint8(reference["images"]), to_uint8(candidate["images"])
    out = {"image_psnr_db": statistics.fmean(min(psnr(r, i), 99.0) for r, i in zip(ref_images, images)),
           "image_ssim": statistics.fmean(ssim(r, i) for r, i in zip(ref_images, images))}
    if reference.get("latents") is not None and candidate.get("latents") is not None:
        ref_lat = reference["latents"].float().cpu().numpy()
        lat = candidate["latents"].float().cpu().numpy()
        span = float(ref_lat.max() - ref_lat.min())
        out["latent_psnr_db"] = statistics.fmean(
            min(float(peak_signal_noise_ratio(r, c, data_range=span)), 99.0) for r, c in zip(ref_lat, lat))
        out["latent_ssim"] = statistics.fmean(
            float(structural_similarity(r, c, channel_axis=0, data_range=span)) for r, c in zip(ref_lat, lat))
    return out


# Kernel classes of a profile and the FLOP classes (count_flops) whose work each one does.
FLOP_CLASS_OF_KERNELS = {"conv": ("convolution",), "gemm": ("linear",), "attention": ("attention",)}


def kernel_class(name: str) -> str:
    """The class of one GPU kernel, by name: conv, gemm, attention, norm, quantize, elementwise, other.

    Order matters: Inductor's fused GroupNorm + SiLU kernels carry "convolution" in their names (the
    op they feed), so Triton kernels are sorted by their own fused ops before the library patterns;
    an activation's fp8 cast fused into a norm kernel counts as norm, a standalone one as quantize."""
    n = name.lower()
    if "implicit_gemm_conv" in n:  # sdsqueeze.accel.fp8conv's kernel
        return "conv"
    if "geglu_kernel" in n:  # sdsqueeze.accel.geglu's GEMM with the gate in its epilogue
        return "gemm"
    if "chunk_moments" in n or "group_scale_shift" in n:  # sdsqueeze.accel.groupnorm's statistics kernels
        return "norm"
    if n.startswith("triton"):
        if "norm" in n or "var_mean" in n or "rsqrt" in n:  # accel/groupnorm's steps, in Inductor's names
            return "norm"
        if "tem_fused" in n:  # Inductor's templates: mm / conv
            return "conv" if "conv" in n else "gemm"
        if "clamp" in n and "to_copy" in n:
            return "quantize"
        return "elementwise"
    if any(k in n for k in ("flash", "fmha", "attention", "sdpa", "attn")):
        return "attention"
    if any(k in n for k in ("fprop", "conv", "implicit_gemm", "dgrad")):
        return "conv"
    if any(k in n for k in ("gemm", "cutlass", "nvjet", "matmul", "_int_mm", "f8f8", "wgmma", "tinygemm", "gemv")):
        return "gemm"
    if "norm" in n:
        return "norm"
    if any(k in n for k in ("elementwise", "reduce", "cat", "copy", "fill", "index")):
        return "elementwise"
    return "other"


def class_rates(kernel_ms: dict, flops: dict, steps: int, pointwise_as_gemm: bool) -> dict:
    """Achieved TFLOP/s per kernel class over one profiled generation (``steps`` CFG UNet calls, a
    VAE decode, a text encoding); 1x1 convolutions count as GEMM work where the build runs them as
    GEMMs. Classes without matrix work get none."""
    def work(part: str) -> dict:
        return flops.get(part, {}) or {}

    total = {}
    for part, times in (("unet_step_flops_by_class", steps), ("vae_decode_flops_by_class", 1),
                        ("text_encoder_flops_by_class", 1)):
        for label, value in work(part).items():
            total[label] = total.get(label, 0) + value * times
    if pointwise_as_gemm:
        moved = work("unet_step_flops_by_class").get("convolution_1x1", 0) * steps
        total["convolution"] = total.get("convolution", 0) - moved
        total["linear"] = total.get("linear", 0) + moved
    rates = {}
    for kernels, labels in FLOP_CLASS_OF_KERNELS.items():
        ms = kernel_ms.get(kernels)
        if ms:
            rates[kernels] = sum(total.get(label, 0) for label in labels) / (ms / 1e3) / 1e12
    return rates


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
