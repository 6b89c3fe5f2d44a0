"""Generate one prompt shard for one variant: PNGs, final latents, a manifest and provenance."""

from __future__ import annotations

import contextlib
import resource
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from . import gpu_slots, intermediates, io, seeding
from .pipeline import run_pipeline
from .variants import Prepared, prepare

MANIFEST_COLUMNS = [
    "prompt_id", "sample", "seed", "variant", "file", "seconds", "cpu_seconds", "batch_index",
    "warmup_seconds",
    "unet_ms_step", "unet_calls",  # the UNet's milliseconds per call (median over the batch), as the benchmark times it
    "peak_memory_mb", "memory_kind",
    "sha256",  # readers check it: changes inside a directory() output are invisible to Snakemake
]


def image_name(prompt_id: int, sample: int) -> str:
    return f"p{int(prompt_id):05d}_s{int(sample)}.png"


def expand_samples(prompts: pd.DataFrame, samples_per_prompt: int) -> pd.DataFrame:
    """One row per image to make: (prompt_id, sample, seed, prompt)."""
    rows = [  # an unconditional model's sample list has no prompt column
        {"prompt_id": int(r.prompt_id), "sample": k, "seed": seeding.sample_seed(int(r.seed), k),
         "prompt": getattr(r, "prompt", "")}
        for r in prompts.itertuples() for k in range(samples_per_prompt)
    ]
    return pd.DataFrame(rows)


class PeakMemory:
    """Peak memory of a region: CUDA allocator peak on GPU, process peak RSS on CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def read(self) -> tuple[float, str]:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
        # ru_maxrss is KiB on Linux; it never decreases, so it bounds the process's peak so far.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss_process"


class BatchTimer:
    """Wall time and process CPU time of one batch. On CUDA the wall time comes from CUDA events
    recorded after a synchronize, so queued kernels of earlier work are not counted in."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.start, self.end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            self.start.record()
        self.began, self.cpu_began = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            self.end.record()
            torch.cuda.synchronize()
            self.wall = self.start.elapsed_time(self.end) / 1e3
        else:
            self.wall = time.perf_counter() - self.began
        # process_time counts every thread of this process and nothing of other processes: on a
        # shared CPU it is the cost that other jobs cannot inflate.
        self.cpu = time.process_time() - self.cpu_began
        return False


def warmup_sizes(n_images: int, batch: int, device: str, spec: dict) -> list[int]:
    """Batch sizes of the untimed warm-up calls. One image where only first-call costs exist (eager,
    CPU); on CUDA or when compiled, every batch size that will be timed: graphs (torch.compile, CUDA
    graphs) are built per shape and cuDNN picks algorithms per shape, so a first call at a new size
    would pay them inside the timed batches."""
    if not device.startswith("cuda") and spec.get("compile", "none") == "none":
        return [1]
    sizes = [min(batch, n_images)]
    if n_images % batch and n_images > batch:
        sizes.append(n_images % batch)  # the last, shorter batch
    return sizes


def warm_up(prepared: Prepared, todo: pd.DataFrame, sizes: list[int], shape, dtype, device: str) -> float:
    """Untimed calls at ``sizes`` before the timed batches: first-call costs (lazy initialisation,
    allocator growth, torch.compile, CUDA-graph capture) land here, recorded apart as the warm-up
    (a compiled variant's compile time). The global RNG state is restored so the warm-up cannot
    change any image."""
    import torch

    total = 0.0
    for size in sizes:
        rows = todo.iloc[:size]
        latents = seeding.initial_latents(rows.seed.tolist(), shape).to(dtype)
        with torch.random.fork_rng(devices=[]), BatchTimer(device) as timer, torch.inference_mode():
            run_batch(prepared, rows.prompt.tolist(), latents, rows.seed.tolist())
        total += timer.wall
    return total


def denoiser(pipe):
    return pipe.unet if hasattr(pipe, "unet") else pipe.transformer


def run_batch(prepared: Prepared, prompts: list[str], latents, seeds: list[int] | None = None):
    """One pipeline call; returns (PIL images, final latents on CPU). ``seeds`` (the images')
    seed the noise a stochastic sampler adds on the way (LCM's), one generator per image."""
    from .uncond import is_unconditional, run_unconditional

    if is_unconditional(prepared.pipe):  # no prompt, no guidance: the pipeline draws its noise from the seeds
        return run_unconditional(prepared.pipe, prepared.spec, seeds)
    captured = {}

    def keep_latents(pipe, step, timestep, callback_kwargs):
        captured["latents"] = callback_kwargs["latents"]
        return callback_kwargs

    generators = {"generator": seeding.sampler_generators(seeds)} if seeds is not None else {}
    out = run_pipeline(prepared, prompts, latents, keep_latents, **generators)
    return out.images, captured["latents"].detach().float().cpu()


def generate_shard(pipe, spec: dict, prompts: pd.DataFrame, out_dir: str | Path,
                   device: str, samples_per_prompt: int = 1, progress: bool = True) -> pd.DataFrame:
    """Render every (prompt, sample) of a shard into ``out_dir`` (written atomically as a whole)."""
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from .accel.measure import Clock, UNetStepTimer
    from .uncond import check_size

    prepared = prepare(pipe, spec)
    todo = expand_samples(prompts, samples_per_prompt)
    check_size(pipe, spec)
    shape = seeding.latent_shape(pipe, int(spec["height"]), int(spec["width"]))
    memory = PeakMemory(device)
    batch = int(spec["batch_size"])
    dtype = pipe.unet.dtype if hasattr(pipe, "unet") else pipe.transformer.dtype  # a module property: ONNX wrappers too
    rows, final_latents = [], {}
    with io.atomic_dir(out_dir) as tmp:
        bar = tqdm(total=len(todo), desc=f"{spec['name']}", unit="img", disable=not progress,
                   file=sys.stderr)
        # Hooked before the warm-up, so the timed calls run the very graphs the warm-up built.
        unet_timer = UNetStepTimer(denoiser(prepared.pipe), Clock(device))
        warmup = warm_up(prepared, todo, warmup_sizes(len(todo), batch, device, spec), shape, dtype, device)
        timed_batches = contextlib.ExitStack()
        device_wait = timed_batches.enter_context(gpu_slots.exclusive_use())  # alone on a shared GPU
        for index, start in enumerate(range(0, len(todo), batch)):
            chunk = todo.iloc[start : start + batch]
            # Drawn in float32 on the CPU, then cast: the pipeline uses given latents' dtype as is.
            latents = seeding.initial_latents(chunk.seed.tolist(), shape).to(dtype)
            memory.reset()
            unet_timer.marks.clear()
            with BatchTimer(device) as timer, torch.inference_mode():
                images, finals = run_batch(prepared, chunk.prompt.tolist(), latents, chunk.seed.tolist())
            peak, kind = memory.read()
            unet_ms = unet_timer.durations_ms()
            for row, image, final in zip(chunk.itertuples(), images, finals):
                name = image_name(row.prompt_id, row.sample)
                image.save(tmp / name, format="PNG")
                final_latents[name] = final.contiguous()
                rows.append({
                    "prompt_id": row.prompt_id, "sample": row.sample, "seed": row.seed,
                    "variant": spec["name"], "file": name, "seconds": timer.wall / len(chunk),
                    "cpu_seconds": timer.cpu / len(chunk), "batch_index": index,
                    "warmup_seconds": warmup, "unet_ms_step": statistics.median(unet_ms) if unet_ms else float("nan"),
                    "unet_calls": len(unet_ms), "peak_memory_mb": peak, "memory_kind": kind,
                    "sha256": intermediates.sha256_file(tmp / name),
                })
            bar.update(len(chunk))
        timed_batches.close()
        unet_timer.remove()
        bar.close()
        manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        manifest.to_csv(tmp / "manifest.csv", index=False)
        save_file(final_latents, str(tmp / "latents.safetensors"))
        params = {k: v for k, v in spec.items()}
        checksums = {name: intermediates.sha256_file(tmp / name)
                     for name in (intermediates.MANIFEST, intermediates.LATENTS)}
        io.write_json(tmp / intermediates.PROVENANCE,
                      io.provenance(params, device, notes=prepared.notes, checksums=checksums,
                                    timing={"warmup_sizes": warmup_sizes(len(todo), batch, device, spec),
                                            "waited_for_device_s": round(device_wait, 3)}))
    return manifest
