"""The shared path against the naive one (a full pipeline call with the callback per image),
evaluation counts, the refusal of non-replayable schedulers, and interrupted shards."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sdsqueeze.models import TinySpec, build_tiny_pipeline
from sdsqueeze.sweep import plan, quality, runner
from sdsqueeze.sweep.operator import make_operator
from sdsqueeze.variants import prepare

PROMPTS = pd.DataFrame({"prompt_id": [7], "prompt": ["a red bus parked on a city street"]})
SPEC = dict(name="ref", dtype="float32", attention="classic", scheduler="pndm", steps=8,
            guidance=7.5, height=64, width=64, batch_size=1)


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    pipeline = build_tiny_pipeline(TinySpec(image_size=64))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def small_grid(operator="ci-round", levels=(1.0, 0.5, 0.25), batch_size=1, seeds=(42,)):
    return plan.Grid(make_operator(operator), (1, 4, 6), levels, seeds, 1, len(seeds), batch_size, 8)


def pixels(path):
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("scheduler,operator,levels", [
    ("pndm", "ci-round", (1.0, 0.5, 0.25)),   # multistep: PNDM's history is rebuilt by replay
    ("dpm++", "uniform", (3, 5, 8)),            # multistep DPM-Solver++ with the b-bit operator
])
def test_shared_path_gives_the_naive_pixels(pipe, tmp_path, scheduler, operator, levels):
    spec = {**SPEC, "scheduler": scheduler}
    grid = small_grid(operator, levels)
    runs = runner.render_shard(pipe, spec, grid, 0, PROMPTS, tmp_path / "shard-0", "cpu",
                               progress=False)
    assert len(runs) == 9
    prepared = prepare(pipe, spec)
    for step, level in [(1, levels[0]), (4, levels[2]), (6, levels[1])]:
        naive_image, naive_bits = runner.naive_run(prepared, grid, PROMPTS.prompt[0], 42, step, level)
        name = plan.compressed_name(grid.operator, step, level, 42)
        shared = pixels(tmp_path / "shard-0" / "p00007" / name)
        assert np.array_equal(np.asarray(naive_image), shared), f"{name} differs from the naive path"
        row = runs[runs.file == f"p00007/{name}"].iloc[0]
        assert row.bits_ans == naive_bits["bits_ans"] and row.bits_zlib == naive_bits["bits_zlib"]
    original = pixels(tmp_path / "shard-0" / "p00007" / "seed42_original.png")
    assert not np.array_equal(original, pixels(tmp_path / "shard-0" / "p00007" / name))
    # evaluations: measured = the planned formula, and well below naive
    evals = json.loads((tmp_path / "shard-0" / "evaluations.json").read_text())
    planned = plan.evaluations_per_item(grid, evals["evaluations_per_full_run"])
    assert evals["shared"] == planned["shared"] and evals["naive"] == planned["naive"]
    assert evals["evaluations_per_full_run"] == plan.loop_length(grid, scheduler)
    assert evals["shared"] < 0.6 * evals["naive"]


def test_batched_ratios_match_up_to_float_noise(pipe, tmp_path):
    one = runner.render_shard(pipe, SPEC, small_grid(batch_size=1), 0, PROMPTS, tmp_path / "a", "cpu",
                              progress=False)
    three = runner.render_shard(pipe, SPEC, small_grid(batch_size=3), 0, PROMPTS, tmp_path / "b",
                                "cpu", progress=False)
    assert list(one.file) == list(three.file)
    for name in one.file:
        diff = np.abs(pixels(tmp_path / "a" / name).astype(int) - pixels(tmp_path / "b" / name))
        assert diff.max() <= 8 and diff.mean() < 0.05, name


def test_a_stochastic_scheduler_is_refused(pipe, tmp_path):
    from diffusers import EulerAncestralDiscreteScheduler

    prepared_pipe = build_tiny_pipeline(TinySpec(image_size=64))
    prepared_pipe.set_progress_bar_config(disable=True)
    prepared_pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(prepared_pipe.scheduler.config)
    spec = {**SPEC, "scheduler": "default"}  # keep the ancestral sampler set above
    with pytest.raises(runner.SharedPathError, match="not replayable exactly"):
        runner.render_shard(prepared_pipe, spec, small_grid(), 0, PROMPTS, tmp_path / "s", "cpu",
                            progress=False)
    assert not (tmp_path / "s").exists()


def test_quality_columns_name_both_conventions(pipe, tmp_path):
    runner.render_shard(pipe, SPEC, small_grid(), 0, PROMPTS, tmp_path / "shard-0", "cpu",
                        progress=False)
    scored = quality.score_shard(tmp_path / "shard-0")
    for column in ("psnr_gray_db", "ssim_gray", "psnr_rgb_db", "ssim_rgb", "lpips_alex",
                   "bits_ans", "bits_zlib", "step", "level", "seed", "prompt_id"):
        assert column in scored
    assert (scored.psnr_gray_db > 0).all() and scored.ssim_rgb.between(-1, 1).all()
    lpips = scored.lpips_alex.astype(str)
    assert lpips.str.startswith("unavailable: ").all() or pd.to_numeric(lpips).notna().all()
    # coarser rounding at the same step loses more
    at_step1 = scored[scored.step == 1].set_index("level")
    assert at_step1.loc[1.0, "psnr_rgb_db"] < at_step1.loc[0.25, "psnr_rgb_db"]


KILLABLE = """
import sys, torch, pandas as pd
sys.path.insert(0, {src!r})
from sdsqueeze.models import TinySpec, build_tiny_pipeline
from sdsqueeze.sweep import plan, runner
from sdsqueeze.sweep.operator import make_operator
torch.set_num_threads(1)
pipe = build_tiny_pipeline(TinySpec(image_size=64))
grid = plan.Grid(make_operator("ci-round"), (1, 4, 6), (1.0, 0.5, 0.25), (42, 43), 1, 2, 1, 8)
prompts = pd.DataFrame({{"prompt_id": [7], "prompt": ["a red bus parked on a city street"]}})
spec = dict(name="ref", dtype="float32", attention="classic", scheduler="pndm", steps=8,
            guidance=7.5, height=64, width=64, batch_size=1)
runner.render_shard(pipe, spec, grid, 0, prompts, sys.argv[1], "cpu", progress=False)
"""


def run_shard_process(out_dir):
    src = str(Path(runner.__file__).resolve().parents[2])
    return subprocess.Popen([sys.executable, "-c", KILLABLE.format(src=src), str(out_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_shard_leaves_nothing_and_rerun_matches_uninterrupted(pipe, tmp_path):
    killed = tmp_path / "killed" / "shard-0"
    process = run_shard_process(killed)
    deadline = time.time() + 120
    while time.time() < deadline and not list(killed.parent.glob(".shard-0.*.part/p00007/*.png")):
        time.sleep(0.2)
    assert process.poll() is None, "the shard finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)  # no cleanup runs: the hardest interruption
    process.wait()
    assert not killed.exists()  # only a hidden .part folder can remain: never a partial shard
    assert run_shard_process(killed).wait() == 0  # the rerun
    clean = tmp_path / "clean" / "shard-0"  # an uninterrupted run of the same shard
    runner.render_shard(pipe, SPEC, small_grid(seeds=(42, 43)), 0, PROMPTS, clean, "cpu",
                        progress=False)
    names = sorted(p.relative_to(clean) for p in clean.rglob("*.png"))
    assert len(names) == 2 * (1 + 9)
    assert names == sorted(p.relative_to(killed) for p in killed.rglob("*.png"))
    for name in names:
        assert np.array_equal(pixels(clean / name), pixels(killed / name))
    assert (clean / "runs.csv").read_text() == (killed / "runs.csv").read_text()
