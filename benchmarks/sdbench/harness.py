"""The acceleration benchmark: every variant timed the same way on one machine.

End to end = one pipeline call (text encoder + all steps + VAE decode), timed with CUDA events
(host clock on the CPU) after warm-up, median of repeats; per UNet step and FLOPs come from the
library's measurement primitives (sdsqueeze.accel.measure); peak memory = the CUDA allocator's
peak over the timed calls; the matmul ceiling is a measured bf16 8192^3 product on the same GPU.

The SD 1.5 architecture comes from sdsqueeze.models (its published sizes, the builder the embedded
model uses) with seeded weights: the GPU machine cannot download, and speed does not depend on the
weights' values.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
import traceback
from pathlib import Path

import torch

from sdsqueeze.accel.measure import Clock, UNetStepTimer, kernel_class, output_agreement
from sdsqueeze.models import SD15_ARCHITECTURE, TinySpec, build_seeded_pipeline
from sdsqueeze.variants import prepare

PROMPTS = ("a photograph of an astronaut riding a horse on the moon",
           "a bowl of fruit on a wooden table, soft morning light",
           "a red double-decker bus in a rainy London street",
           "a lighthouse on a cliff at sunset, oil painting")
ARCHITECTURE_NOTE = "SD 1.5 architecture, seeded weights"


# The tiny shape is the embedded model's architecture, for CPU smoke runs of the benchmark.
SHAPES = {"sd15": (SD15_ARCHITECTURE, 512), "tiny": (TinySpec().architecture(), TinySpec().image_size)}


def build_pipeline(shape: str, tokenizer_dir: str | Path, device: str, dtype: torch.dtype, seed: int = 0):
    """StableDiffusionPipeline with SD 1.5's architecture (or the tiny one), seeded weights: the
    builder of the workflow's ``model.source: sd15-seeded``, weights initialised on ``device``."""
    architecture, image_size = SHAPES[shape]
    pipe = build_seeded_pipeline(architecture, image_size, seed=seed, device=device, tokenizer_dir=tokenizer_dir)
    return pipe.to(device=device, dtype=dtype)


def generation_call(prepared, batch: int, steps: int, size: int):
    """The call that is timed: text encoding, every step, VAE decode (output stays a tensor)."""
    from sdsqueeze.pipeline import run_pipeline

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    device = next(prepared.pipe.text_encoder.parameters()).device

    def run():
        return run_pipeline(prepared, prompts, num_inference_steps=steps, height=size, width=size,
                            output_type="pt", generator=torch.Generator(device).manual_seed(0)).images

    return run


def time_generation(prepared, batch: int, steps: int, size: int, warmup: int, repeats: int,
                    device: str) -> dict:
    run = generation_call(prepared, batch, steps, size)
    clock = Clock(device)
    latents = {}  # the final latents, as the VAE receives them (post_quant_conv's input)
    capture = getattr(prepared.pipe.vae, "post_quant_conv", None)
    hook = capture.register_forward_pre_hook(lambda m, a: latents.__setitem__("last", a[0].detach())) \
        if capture is not None else None
    began = time.perf_counter()
    with torch.inference_mode():
        for _ in range(warmup):
            images = run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        warmup_s = time.perf_counter() - began
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        totals, steps_ms = [], []
        for _ in range(repeats):
            timer = UNetStepTimer(prepared.pipe.unet, clock)
            start = clock.mark()
            images = run()
            end = clock.mark()
            totals.append(clock.elapsed_ms(start, end) / 1e3)
            steps_ms.extend(timer.durations_ms())
            timer.remove()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    if hook is not None:
        hook.remove()
    e2e = statistics.median(totals)
    return {
        "e2e_s_median": e2e, "s_per_image": e2e / batch, "e2e_s_all": json.dumps([round(t, 4) for t in totals]),
        "unet_ms_step_median": statistics.median(steps_ms), "unet_ms_step_mean": statistics.fmean(steps_ms),
        "unet_calls_per_image_call": len(steps_ms) / repeats, "peak_memory_mb": peak,
        "warmup_s": warmup_s, "output_finite": bool(torch.isfinite(images.float()).all()),
        "_outputs": {"images": images.detach().float().cpu(),
                     "latents": latents["last"].float().cpu() if "last" in latents else None},
    }


def profile_generation(prepared, batch: int, steps: int, size: int, device: str) -> tuple[str, dict]:
    """One generation under torch.profiler: the kernel table and GPU-busy vs wall time."""
    from torch.profiler import ProfilerActivity, profile

    run = generation_call(prepared, batch, steps, size)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch.inference_mode(), profile(activities=activities) as prof:
        began = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - began
    sort = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=70)
    busy, classes, kernels, launches, syncs = 0.0, {}, {}, 0, 0
    for event in prof.events():
        if device.startswith("cuda") and event.device_type == torch.autograd.DeviceType.CUDA:
            us = event.self_device_time_total
            busy += us
            label = kernel_class(event.name)
            classes[label] = classes.get(label, 0.0) + us / 1e3
            calls, ms = kernels.get(event.name, (0, 0.0))
            kernels[event.name] = (calls + 1, ms + us / 1e3)
        if event.name in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx"):
            launches += 1
        if event.name in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"):
            syncs += 1  # the host waited for the GPU
    summary = {"profiled_wall_s": wall, "gpu_busy_s": busy / 1e6,
               "gpu_busy_fraction": busy / 1e6 / wall if wall else float("nan"),
               "kernel_ms_by_class": {k: round(v, 2) for k, v in classes.items()},
               "kernel_launches": launches, "host_waits": syncs, "_kernels": kernels}
    return table, summary


def append_kernels(out: Path, variant: str, batch: int, kernels: dict) -> None:
    """Every GPU kernel of one profiled generation (calls, ms, class) into the run's kernels.csv, so a
    run's profile can be re-classed later without a GPU (the profiles.txt table keeps only the top 25)."""
    import pandas as pd

    if not kernels:
        return
    frame = pd.DataFrame([{"variant": variant, "batch": batch, "kernel": name, "calls": calls, "ms": round(ms, 4),
                           "class": kernel_class(name)} for name, (calls, ms) in kernels.items()])
    path = Path(out) / "kernels.csv"
    frame.to_csv(path, mode="a", header=not path.is_file(), index=False)


def versions() -> dict:
    import diffusers
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "diffusers": diffusers.__version__, "transformers": transformers.__version__}
    try:
        import torchao

        out["torchao"] = torchao.__version__
    except ImportError:
        out["torchao"] = "not installed"
    if torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
        out["gpu"] = torch.cuda.get_device_name()
        out["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    return out


def unet_bytes(pipe) -> dict:
    from sdsqueeze.accel.lowbit import module_bytes, serialized_bytes

    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    return {"unet_bytes_memory": module_bytes(unet), "unet_bytes_disk": serialized_bytes(unet)}


def _spec(name: str, overrides: dict, args) -> dict:
    """The variant's full spec: config/accel.yaml's generation defaults, the run's size, steps and
    first batch, then the variant's own keys (as ``variants.resolve_variant`` merges them)."""
    from .run import DEFAULTS

    return {**DEFAULTS, "steps": args.steps, "height": args.size, "width": args.size,
            "batch_size": args.batches[0], **overrides, "name": name}


def _row_base(spec: dict) -> dict:
    return {"variant": spec["name"], **{k: spec.get(k) for k in (
        "dtype", "attention", "scheduler", "steps", "compile", "channels_last", "channels_last_groupnorm", "fuse_qkv",
        "kv_cache", "deepcache", "lowbit", "lowbit_smoothquant", "cudnn_benchmark", "inductor_tuning", "freeze_weights",
        "host_timesteps")}}


def _prepare(spec: dict, args):
    from sdsqueeze.models import resolve_dtype

    began = time.perf_counter()
    pipe = build_pipeline(args.shape, args.tokenizer, args.device, resolve_dtype(spec["dtype"]), args.seed)
    prepared = prepare(pipe, spec)
    return prepared, {**unet_bytes(prepared.pipe), "prepare_s": time.perf_counter() - began}


def _time_batches(prepared, extra: dict, args, log, on_row) -> list[dict]:
    """Time the prepared variant at every batch size (a failure becomes the row's status)."""
    spec, rows = prepared.spec, []
    base, name = _row_base(spec), spec["name"]
    notes = json.dumps(prepared.notes, default=str)
    for batch in args.batches:
        if args.deadline and time.time() > args.deadline:
            rows.append({**base, "batch": batch, "status": "skipped: time budget"})
            continue
        warmup = args.warmup + (2 if spec.get("compile", "none") != "none" else 0)
        try:
            timing = time_generation(prepared, batch, int(spec["steps"]), args.size, warmup,
                                     args.repeats, args.device)
            status = "ok"
        except Exception as err:  # noqa: BLE001
            log(f"[{name} b{batch}] FAILED: {type(err).__name__}: {err}\n{traceback.format_exc()}")
            timing, status = {}, f"error: {type(err).__name__}: {str(err)[:300]}"
        outputs = timing.pop("_outputs", None)
        if outputs is not None and args.quality_reference:
            timing.update(_agreement(name, batch, outputs, args, log))
        row = {**base, "batch": batch, "status": status, **extra, **timing, "notes": notes}
        if status == "ok" and (name, batch) in args.profile:
            try:
                table, summary = profile_generation(prepared, batch, int(spec["steps"]), args.size, args.device)
                append_kernels(args.out, name, batch, summary.pop("_kernels"))
                args.profiles.append(f"===== {name} batch {batch} =====\n{json.dumps(summary)}\n{table}\n")
                row.update({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in summary.items()})
            except Exception as err:  # noqa: BLE001 -- the timing stands; the profile is extra evidence
                log(f"[{name} b{batch}] profile FAILED: {type(err).__name__}: {err}")
        rows.append(row)
        on_row(row)
        log(f"[{name} b{batch}] {status} " + (f"{timing['s_per_image']:.3f} s/img, "
            f"{timing['unet_ms_step_median']:.2f} ms/step, {timing['peak_memory_mb']:.0f} MB, "
            f"warm-up {timing['warmup_s']:.1f} s" if timing else ""))
    return rows


def _agreement(name: str, batch: int, outputs: dict, args, log) -> dict:
    """The reference variant's outputs are kept; every later variant's are compared with them."""
    if name == args.quality_reference:
        args.reference_outputs[batch] = outputs
        return {}
    reference = args.reference_outputs.get(batch)
    if reference is None:
        return {}
    try:
        return {f"vs_{args.quality_reference}_{k}": v for k, v in output_agreement(reference, outputs).items()}
    except Exception as err:  # noqa: BLE001 -- the timing stands without the comparison
        log(f"[{name} b{batch}] quality comparison FAILED: {type(err).__name__}: {err}")
        return {}


def _release(args, cudnn_benchmark: bool) -> None:
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    torch._dynamo.reset()  # compiled graphs of one variant must not serve the next
    torch.backends.cudnn.benchmark = cudnn_benchmark


def _with_prepared(spec: dict, args, log, time_prepared) -> list[dict]:
    """Build and prepare ``spec``, hand it to ``time_prepared(prepared, extra)``, then release
    it; a failure to prepare is recorded as one error row per batch, never hidden."""
    cudnn_benchmark = torch.backends.cudnn.benchmark  # a variant may set it; the next must not inherit
    try:
        prepared, extra = _prepare(spec, args)
    except Exception as err:  # noqa: BLE001 -- recorded in the results, then the next variant runs
        _release(args, cudnn_benchmark)
        log(f"[{spec['name']}] prepare FAILED: {type(err).__name__}: {err}\n{traceback.format_exc()}")
        return [{**_row_base(spec), "batch": b, "status": f"error: {type(err).__name__}: {str(err)[:300]}"}
                for b in args.batches]
    try:
        return time_prepared(prepared, extra)
    finally:
        del prepared  # the pipeline goes before the CUDA cache is emptied
        _release(args, cudnn_benchmark)


def run_variant(name: str, overrides: dict, args, log, on_row=lambda row: None) -> list[dict]:
    """Prepare one variant, time it at every batch size; a failure is recorded, never hidden.
    ``on_row`` sees each row as soon as it exists, so a run killed mid-variant keeps it."""
    return _with_prepared(_spec(name, overrides, args), args, log,
                          lambda prepared, extra: _time_batches(prepared, extra, args, log, on_row))


def run_scheduler_sweep(name: str, overrides: dict, schedules: list[tuple[str, int]], args, log,
                        on_row=lambda row: None) -> list[dict]:
    """Scheduler x steps on one prepared build: the UNet (and its compiled graphs) does not depend
    on the scheduler, so it is prepared once and only the scheduler is swapped, as
    ``variants.set_scheduler`` sets it. Rows are named ``{name}-{scheduler}{steps}``."""
    from sdsqueeze.variants import set_scheduler

    spec = _spec(name, overrides, args)

    def sweep(prepared, extra) -> list[dict]:
        rows = []
        for scheduler, steps in schedules:
            prepared.spec = {**spec, "scheduler": scheduler, "steps": steps,
                             "name": f"{name}-{scheduler.replace('+', '')}{steps}"}
            set_scheduler(prepared)
            if prepared.host_timesteps is not None:
                prepared.host_timesteps.wrap_scheduler(prepared.pipe.scheduler)
            rows += _time_batches(prepared, extra, args, log, on_row)
        return rows

    return _with_prepared(spec, args, log, sweep)
