"""The training loop every distillation trainer runs: seeded, resumable, logged.

Each iteration draws its randomness from its own generator, seeded from (seed, iteration), so an
iteration's batch does not depend on how many iterations ran before it in this process: a run
killed after a checkpoint and started again replays exactly the iterations it lost and ends with
the weights an uninterrupted run ends with (on the CPU, one thread; tests/unit/test_distill_loop.py).

Written here rather than taken from a library because the installed ones do not fit: accelerate's
``save_state`` / ``load_state`` need its Accelerator around the models and leave the loss log and
the atomic file handling to the caller, and diffusers' training scripts are command-line examples.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

CHECKPOINT_NAME = "last.pt"
WARMUP_ITERATIONS = 5  # left out of TrainResult.iterations_per_second (allocator, autotuning, caches)
LOG_COLUMNS = ("iteration", "loss", "it_per_s")

StepFn = Callable[[int, torch.Generator], torch.Tensor]  # (iteration, generator) -> scalar loss


@dataclass
class TrainResult:
    """What one call of ``train`` did: the losses of the iterations it ran (all of them when it
    started from scratch), where it resumed, its speed and the device's peak memory."""

    iterations: int
    resumed_from: int
    losses: list[float] = field(default_factory=list)
    iteration_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0  # the whole call: checkpoint writes included
    peak_memory_bytes: int | None = None

    @property
    def iterations_per_second(self) -> float:
        """Median speed of this call's iterations, the first WARMUP_ITERATIONS left out (when
        there are more) like a benchmark's warm-up; checkpoint writes are not iterations."""
        timed = self.iteration_seconds[WARMUP_ITERATIONS:] or self.iteration_seconds
        if not timed:
            return float("nan")
        return 1.0 / max(statistics.median(timed), 1e-9)


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed of one iteration's generator: well spread, independent of the run's history."""
    digest = hashlib.sha256(f"sdsqueeze-distill:{seed}:{iteration}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**63 - 1)


def _rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, iteration: int, modules: Mapping[str, torch.nn.Module], optimizer,
                    lr_scheduler=None) -> None:
    """Model(s), optimizer, schedule, RNG states and iteration in one file, renamed into place so a
    kill mid-write leaves the previous checkpoint intact."""
    state = {
        "iteration": iteration,
        "modules": {name: module.state_dict() for name, module in modules.items()},
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
        "rng": _rng_states(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path, modules: Mapping[str, torch.nn.Module], optimizer, lr_scheduler=None) -> int:
    """Restore what ``save_checkpoint`` wrote; returns the iteration it had reached."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    optimizer.load_state_dict(state["optimizer"])
    if lr_scheduler is not None and state["lr_scheduler"] is not None:
        lr_scheduler.load_state_dict(state["lr_scheduler"])
    _set_rng_states(state["rng"])
    return int(state["iteration"])


def _open_log(log_path: Path, keep_through: int):
    """The loss log opened for appending, holding only rows up to ``keep_through`` (the rows after
    the checkpoint belong to iterations that will run again)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    if keep_through > 0 and log_path.exists():
        with log_path.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["iteration"]) <= keep_through]
    handle = log_path.open("w", newline="")
    writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    handle.flush()
    return handle, writer


def _enable_gradient_checkpointing(modules: Mapping[str, torch.nn.Module]) -> None:
    for module in modules.values():
        if hasattr(module, "enable_gradient_checkpointing") and any(p.requires_grad for p in module.parameters()):
            module.enable_gradient_checkpointing()


def _device_of(modules: Mapping[str, torch.nn.Module]) -> torch.device:
    for module in modules.values():
        for parameter in module.parameters():
            return parameter.device
    return torch.device("cpu")


def train(step_fn: StepFn, modules: Mapping[str, torch.nn.Module], optimizer, n_iters: int,
          ckpt_dir: str | os.PathLike, ckpt_every: int, seed: int, log_path: str | os.PathLike, *,
          lr_scheduler=None, after_step: Callable[[int], None] | None = None,
          autocast_dtype: torch.dtype | None = None, gradient_checkpointing: bool = False,
          max_grad_norm: float | None = None, progress: bool = True, desc: str = "distill") -> TrainResult:
    """Run ``step_fn`` for iterations 1..``n_iters``: zero the gradients, compute the loss (under
    autocast to ``autocast_dtype`` when given), backward, optional clipping, optimizer and schedule
    step, then ``after_step(iteration)`` (e.g. an EMA update of a target network held in
    ``modules``). Every ``ckpt_every`` iterations and at the end, ``modules`` (all of them, trained
    or not), the optimizer, the schedule and the RNG states go to ``ckpt_dir/last.pt``; a call that
    finds one resumes from it. The log is a CSV of (iteration, loss, it_per_s)."""
    if n_iters < 1 or ckpt_every < 1:
        raise ValueError(f"n_iters and ckpt_every must be >= 1, got {n_iters} and {ckpt_every}")
    from tqdm import tqdm

    checkpoint = Path(ckpt_dir) / CHECKPOINT_NAME
    start = load_checkpoint(checkpoint, modules, optimizer, lr_scheduler) if checkpoint.exists() else 0
    if gradient_checkpointing:
        _enable_gradient_checkpointing(modules)
    device = _device_of(modules)
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())

    result = TrainResult(iterations=start, resumed_from=start)
    handle, writer = _open_log(Path(log_path), start)
    began = time.perf_counter()
    try:
        for module in modules.values():
            if any(p.requires_grad for p in module.parameters()):
                module.train()
        bar = tqdm(range(start + 1, n_iters + 1), initial=start, total=n_iters, desc=desc, unit="it",
                   disable=not progress, mininterval=2.0)
        for iteration in bar:
            tick = time.perf_counter()
            generator = torch.Generator("cpu").manual_seed(iteration_seed(seed, iteration))
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = step_fn(iteration, generator)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(trained, max_grad_norm)
            optimizer.step()
            if lr_scheduler is not None:
                lr_scheduler.step()
            if after_step is not None:
                after_step(iteration)
            value = float(loss.detach())  # synchronises the device, so the timing below is complete
            elapsed = time.perf_counter() - tick
            writer.writerow({"iteration": iteration, "loss": f"{value:.6g}", "it_per_s": f"{1 / max(elapsed, 1e-9):.4g}"})
            result.losses.append(value)
            result.iteration_seconds.append(elapsed)
            result.iterations = iteration
            bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            if iteration % ckpt_every == 0 or iteration == n_iters:
                handle.flush()
                save_checkpoint(checkpoint, iteration, modules, optimizer, lr_scheduler)
    finally:
        handle.close()
        for module in modules.values():
            module.eval()
    result.seconds = time.perf_counter() - began
    if device.type == "cuda":
        result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    return result


def read_log(log_path: str | os.PathLike) -> list[dict]:
    """The loss log as rows of floats (iteration as int)."""
    with Path(log_path).open(newline="") as handle:
        return [{"iteration": int(r["iteration"]), "loss": float(r["loss"]), "it_per_s": float(r["it_per_s"])}
                for r in csv.DictReader(handle)]
