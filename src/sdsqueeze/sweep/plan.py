"""The sweep's grid: (prompt, seed) trajectories in shards, each carrying every (step, level) run.

Everything here is pure arithmetic on the config, so Snakemake plans a 5,400-run sweep in
tens of jobs without touching a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .operator import Operator, make_operator


@dataclass(frozen=True)
class Grid:
    operator: Operator
    steps: tuple[int, ...]  # compress_at_step k: compress after k + 1 completed denoising steps
    levels: tuple  # ratios (ci-round) or bit depths (uniform)
    seeds: tuple[int, ...]
    n_prompts: int
    shard_size: int  # trajectories per job
    batch_size: int  # compressed runs per pipeline call
    num_inference_steps: int

    @property
    def items(self) -> list[tuple[int, int]]:
        """(prompt index, seed) of every trajectory, in a fixed order; the index is the row of the
        prompt set (its first ``n_prompts`` rows are the sweep's prompts)."""
        return [(p, s) for p in range(self.n_prompts) for s in self.seeds]

    @property
    def n_shards(self) -> int:
        return math.ceil(len(self.items) / self.shard_size)

    def shard_items(self, shard: int) -> list[tuple[int, int]]:
        if not 0 <= shard < self.n_shards:
            raise ValueError(f"sweep shard {shard} out of range 0..{self.n_shards - 1}")
        return self.items[shard * self.shard_size : (shard + 1) * self.shard_size]

    @property
    def n_runs(self) -> int:
        return len(self.items) * len(self.steps) * len(self.levels)


def grid_from_config(config: dict) -> Grid:
    sweep = config["sweep"]
    variant_name = sweep["variant"] or config["reference"]
    if variant_name not in config["variants"]:
        raise ValueError(f"sweep.variant is '{variant_name}', which is not a variant; "
                         f"allowed: {', '.join(sorted(config['variants']))}")
    variant = config["variants"][variant_name] or {}
    steps_total = sweep["num_inference_steps"] or variant.get("steps", config["generation"]["steps"])
    levels = sweep["ratios"] if sweep["operator"] == "ci-round" else sweep["bits"]
    grid = Grid(
        operator=make_operator(sweep["operator"], sweep["range"]),
        steps=tuple(sorted(set(int(k) for k in sweep["steps"]))),
        levels=tuple(levels),
        seeds=tuple(int(s) for s in sweep["seeds"]),
        n_prompts=int(sweep["prompts"]),
        shard_size=int(sweep["shard_size"]),
        batch_size=int(sweep["batch_size"]),
        num_inference_steps=int(steps_total),
    )
    check_grid(grid, config)
    return grid


def check_grid(grid: Grid, config: dict) -> None:
    if max(grid.steps) >= grid.num_inference_steps:
        raise ValueError(
            f"sweep.steps go up to {max(grid.steps)}, but a run has only {grid.num_inference_steps} "
            f"denoising steps (indices 0..{grid.num_inference_steps - 1}); lower the steps or raise "
            "sweep.num_inference_steps")
    if grid.n_prompts > config["prompts"]["n"]:
        raise ValueError(f"sweep.prompts = {grid.n_prompts} exceeds prompts.n = {config['prompts']['n']}")
    if len(set(grid.levels)) != len(grid.levels) or len(set(grid.seeds)) != len(grid.seeds):
        raise ValueError("sweep levels and seeds must not repeat")


def prompt_dir(prompt_id: int) -> str:
    return f"p{int(prompt_id):05d}"


def compressed_name(operator: Operator, step: int, level, seed: int) -> str:
    """Compression-Inference's convention: step10_ratio0.75_seed42_compressed.png (bits4 for `uniform`)."""
    return f"step{int(step)}_{operator.label(level)}_seed{int(seed)}_compressed.png"


def original_name(seed: int) -> str:
    return f"seed{int(seed)}_original.png"


def loop_length(grid: Grid, scheduler: str = "default") -> int:
    """Denoiser calls of one full run: diffusers' PNDM (PLMS, skip_prk_steps) takes one extra
    step for its warm-up, the others one call per inference step. The runner measures it."""
    return grid.num_inference_steps + (1 if scheduler == "pndm" else 0)


def evaluations_per_item(grid: Grid, calls_per_run: int) -> dict[str, int]:
    """Denoiser evaluations (per image and step) of one trajectory's runs, shared vs naive.

    Compressing after step k leaves loop iterations 0..k + warm-up as in the uncompressed run
    (warm-up = calls beyond one per step, PNDM's 1; see runner.warmup_calls), so a compressed run
    needs only the iterations after that; the one uncompressed trajectory (which is also the
    reference image) supplies the rest. Naive = every compressed run from scratch (references
    not counted).
    """
    warmup = calls_per_run - grid.num_inference_steps
    suffixes = sum(calls_per_run - (k + warmup) - 1 for k in grid.steps) * len(grid.levels)
    return {"shared": calls_per_run + suffixes,
            "naive": calls_per_run * len(grid.steps) * len(grid.levels)}


def planned_evaluations(grid: Grid, calls_per_run: int) -> dict[str, float]:
    per_item = evaluations_per_item(grid, calls_per_run)
    n = len(grid.items)
    shared, naive = per_item["shared"] * n, per_item["naive"] * n
    return {"runs": grid.n_runs, "trajectories": n, "calls_per_run": calls_per_run,
            "shared": shared, "naive": naive, "shared_over_naive": shared / naive}
