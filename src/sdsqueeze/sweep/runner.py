"""Render one sweep shard on shared trajectories.

For each (prompt, seed) the uncompressed run is computed once. Its denoiser outputs for steps
0..max(steps) are recorded; a compressed run at step k then makes a full, ordinary pipeline
call (diffusers' own loop, scheduler and callback) in which the denoiser's forward *replays*
the recorded outputs for steps 0..k instead of evaluating the network. The scheduler therefore
receives exactly the inputs it received in the uncompressed run, so its internal history
(PNDM's ets, DPM-Solver++'s model outputs, flow matching's step index) is rebuilt bit for bit
for every scheduler -- no scheduler state has to be copied. Each compressed run asserts that
the latent it reaches at step k equals the trajectory's (a stochastic scheduler, or anything
else that breaks exactness, stops the job with a message instead of producing wrong numbers).

Hand-written because diffusers has no "resume from step k" entry point; nothing in diffusers is
patched: the wrapper is an instance attribute on the loaded model, removed afterwards.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .. import io, seeding
from ..pipeline import run_pipeline
from ..variants import Prepared, prepare
from . import bits as sweep_bits
from .plan import Grid, compressed_name, original_name, prompt_dir

log = logging.getLogger(__name__)


class SharedPathError(RuntimeError):
    """A resumed run did not reproduce the uncompressed trajectory's prefix."""


def denoiser_of(pipe):
    module = getattr(pipe, "unet", None)  # not `or`: a compiled module refuses truth tests
    module = module if module is not None else getattr(pipe, "transformer", None)
    if module is None:
        raise ValueError(f"{type(pipe).__name__} has neither a unet nor a transformer")
    return module


@dataclass
class DenoiserTap:
    """Wraps the denoiser's forward: records outputs per step, replays them, counts evaluations.

    ``evaluations`` counts images x denoiser calls actually computed (classifier-free guidance's
    doubled batch is one evaluation per image, as in the naive count).
    """

    module: torch.nn.Module
    step: int = 0
    call_in_step: int = 0
    images: int = 1
    record_through: int = -1
    replay_through: int = -1
    cache: dict = field(default_factory=dict)
    evaluations: int = 0
    full_run_evaluations: int = 0  # measured on the last uncompressed trajectory

    def __enter__(self):
        self.module.forward = self._forward  # instance attribute: shadows the class's forward
        return self

    def __exit__(self, *exc):
        del self.module.forward

    def start_call(self, images: int, record_through: int = -1, replay_through: int = -1) -> None:
        self.step, self.call_in_step, self.images = 0, 0, images
        self.record_through, self.replay_through = record_through, replay_through

    def step_ended(self, step: int) -> None:
        self.step, self.call_in_step = step + 1, 0

    def _forward(self, *args, **kwargs):
        if self.step <= self.replay_through:
            if kwargs.get("return_dict", True):
                raise ValueError("the pipeline calls its denoiser with return_dict=True; "
                                 "the shared-path replay supports return_dict=False pipelines only")
            recorded = self.cache[self.step][self.call_in_step]
            self.call_in_step += 1
            groups = recorded.shape[0]  # recorded at one image per call: one row per CFG group
            batch = recorded.unsqueeze(1).expand(groups, self.images, *recorded.shape[1:])
            return (batch.reshape(groups * self.images, *recorded.shape[1:]),)
        out = type(self.module).forward(self.module, *args, **kwargs)
        self.evaluations += self.images
        if self.step <= self.record_through:
            self.cache.setdefault(self.step, []).append(out[0].detach().clone())
        return out


def warmup_calls(scheduler, num_inference_steps: int) -> int:
    """Loop iterations that come before the first completed denoising step.

    The step index k counts *completed denoising steps* (k = 0: after the first), so that k means
    the same progress for every scheduler. diffusers' PNDM (PLMS, skip_prk_steps) runs its first
    timestep twice: iteration 0 only primes the multistep history, and iteration 1 redoes that
    step from the same starting sample, so a latent compressed after iteration 0 is almost
    discarded. Its loop index for k is therefore k + 1; for one-call-per-step schedulers it is k.
    Read from the timesteps the pipeline actually set, not from the scheduler's name.
    """
    extra = len(scheduler.timesteps) - int(num_inference_steps)
    if extra and getattr(scheduler, "order", 1) != 1:
        raise ValueError(
            f"{type(scheduler).__name__} makes {extra} extra denoiser calls interleaved with its "
            "steps (order > 1); compress_at_step is defined only for schedulers whose extra calls "
            "come first (PNDM) or that make one call per step: pick pndm, ddim, dpm++ or euler")
    return extra


def pipeline_call(prepared: Prepared, prompt: str, latents, steps: int, on_step_end):
    """One ordinary pipeline call with our step-end callback chained after the variant's."""
    with torch.inference_mode():
        return run_pipeline(prepared, [prompt] * latents.shape[0], latents, on_step_end,
                            num_inference_steps=steps).images


def compress_callback(grid: Grid, step: int, levels, rows: list, tap=None, expected=None):
    """The operator as a diffusers step-end callback: after denoising step ``step`` (counted in
    completed steps, see warmup_calls), each row of the batch is compressed at its own level. ``rows`` receives the bits measured."""

    def on_step_end(pipe, i, timestep, kwargs):
        if i == step + warmup_calls(pipe.scheduler, grid.num_inference_steps):
            latents = kwargs["latents"]
            if expected is not None and not all(torch.equal(row, expected) for row in latents):
                raise SharedPathError(
                    f"the resumed run reached a different latent at step {i} than the uncompressed "
                    "trajectory; this scheduler is not replayable exactly (stochastic schedulers "
                    "such as DDPM or ancestral samplers are not supported by the shared path)")
            compressed = [grid.operator(row, level) for row, level in zip(latents, levels)]
            for level, result in zip(levels, compressed):
                rows.append({"level": level, **sweep_bits.measure(result.codes, result.side_bits)})
            kwargs["latents"] = torch.stack([c.latent for c in compressed])
        if tap is not None:
            tap.step_ended(i)
        return kwargs

    return on_step_end


def initial_latent(pipe, spec: dict, seed: int):
    shape = seeding.latent_shape(pipe, int(spec["height"]), int(spec["width"]))
    return seeding.initial_latents([seed], shape).to(denoiser_of(pipe).dtype)


def naive_run(prepared: Prepared, grid: Grid, prompt: str, seed: int, step: int, level):
    """One compressed image Compression-Inference's way: a full pipeline call from noise (for tests)."""
    rows: list = []
    latents = initial_latent(prepared.pipe, prepared.spec, seed)
    callback = compress_callback(grid, step, [level], rows)
    return pipeline_call(prepared, prompt, latents, grid.num_inference_steps, callback)[0], rows[0]


def render_item(prepared: Prepared, tap: DenoiserTap, grid: Grid, prompt: str, seed: int,
                save) -> list[dict]:
    """The trajectory of one (prompt, seed) and all its compressed runs; ``save(image, name)``."""
    T = grid.num_inference_steps
    latents = initial_latent(prepared.pipe, prepared.spec, seed)
    at_steps: dict[int, torch.Tensor] = {}

    def record(pipe, i, timestep, kwargs):
        if i - warmup_calls(pipe.scheduler, T) in grid.steps:
            at_steps[i - warmup_calls(pipe.scheduler, T)] = kwargs["latents"][0].detach().clone()
        tap.step_ended(i)
        return kwargs

    tap.cache.clear()
    # The warm-up is known only once the pipeline has set its timesteps, so every denoiser output
    # is recorded (a few more than the replay needs; the cache is cleared per trajectory).
    tap.start_call(images=1, record_through=2 * T)
    before = tap.evaluations
    save(pipeline_call(prepared, prompt, latents, T, record)[0], original_name(seed))
    tap.full_run_evaluations = tap.evaluations - before
    warmup = warmup_calls(prepared.pipe.scheduler, T)
    rows = []
    for step in grid.steps:
        for start in range(0, len(grid.levels), grid.batch_size):
            levels = grid.levels[start : start + grid.batch_size]
            measured: list = []
            callback = compress_callback(grid, step, levels, measured, tap=tap,
                                         expected=at_steps[step])
            tap.start_call(images=len(levels), replay_through=step + warmup)
            images = pipeline_call(prepared, prompt, latents.repeat(len(levels), 1, 1, 1), T,
                                   callback)
            for image, level, bits in zip(images, levels, measured):
                name = compressed_name(grid.operator, step, level, seed)
                save(image, name)
                rows.append({"step": step, **bits, "file": name})
    tap.cache.clear()
    return rows


def render_shard(pipe, spec: dict, grid: Grid, shard: int, prompts: pd.DataFrame,
                 out_dir: str | Path, device: str, progress: bool = True) -> pd.DataFrame:
    """Every trajectory of one shard into ``out_dir`` (atomically: all or nothing)."""
    from tqdm import tqdm

    prepared = prepare(pipe, spec)
    items = grid.shard_items(shard)
    rows = []
    with io.atomic_dir(out_dir) as tmp, DenoiserTap(denoiser_of(pipe)) as tap:
        for prompt_index, seed in tqdm(items, desc=f"sweep shard {shard}", unit="trajectory",
                                    disable=not progress, file=sys.stderr):
            prompt_id, prompt = prompts.iloc[prompt_index][["prompt_id", "prompt"]]
            folder = tmp / prompt_dir(prompt_id)
            folder.mkdir(exist_ok=True)

            def save(image, name, folder=folder):
                image.save(folder / name, format="PNG")

            for row in render_item(prepared, tap, grid, prompt, seed, save):
                rows.append({"prompt_id": int(prompt_id), "seed": seed, "operator": grid.operator.name,
                             "level_name": grid.operator.level_name, **row,
                             "file": f"{prompt_dir(prompt_id)}/{row['file']}",
                             "reference": f"{prompt_dir(prompt_id)}/{original_name(seed)}"})
        runs = pd.DataFrame(rows)
        runs.to_csv(tmp / "runs.csv", index=False)
        # Naive: every compressed run from noise, at the measured cost of one uncompressed run.
        io.write_json(tmp / "evaluations.json", {
            "trajectories": len(items), "runs": len(runs), "shared": tap.evaluations,
            "naive": len(runs) * tap.full_run_evaluations,
            "evaluations_per_full_run": tap.full_run_evaluations,
            "num_inference_steps": grid.num_inference_steps,
        })
        io.write_json(tmp / "provenance.json", io.provenance(
            {**spec, "grid": grid_record(grid), "shard": shard}, device, notes=prepared.notes))
    return runs


def grid_record(grid: Grid) -> dict:
    return {"operator": grid.operator.name, "per_channel": grid.operator.per_channel,
            "steps": list(grid.steps), "levels": list(grid.levels), "seeds": list(grid.seeds),
            "n_prompts": grid.n_prompts, "shard_size": grid.shard_size,
            "batch_size": grid.batch_size, "num_inference_steps": grid.num_inference_steps}


def total_evaluations(shard_dirs) -> dict:
    """Measured denoiser evaluations of the whole sweep, shared path vs naive."""
    import json

    records = [json.loads((Path(d) / "evaluations.json").read_text()) for d in shard_dirs]
    total = {key: sum(r[key] for r in records) for key in ("trajectories", "runs", "shared", "naive")}
    total["shared_over_naive"] = total["shared"] / total["naive"] if total["naive"] else float("nan")
    total["evaluations_per_full_run"] = records[0]["evaluations_per_full_run"] if records else None
    return total
