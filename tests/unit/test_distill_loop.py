"""The distillation training loop: seeded, logged, checkpointed, and a kill -9 resumes to the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sdsqueeze.distill.loop import CHECKPOINT_NAME, read_log, train

N_ITERS = 12


def tiny_run(workdir: Path, n_iters: int = N_ITERS, seed: int = 3, pause: float = 0.0):
    """A tiny model with dropout (global RNG) trained on per-iteration random batches (the loop's
    generator); returns (model, result). ``pause`` slows each step so a test can kill the run."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.2), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    target = torch.nn.Linear(8, 1)  # a fixed "teacher", part of the checkpoint like an EMA target would be
    target.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0 / (1 + 0.1 * i))

    def step(iteration, generator):
        if pause:
            time.sleep(pause)
        x = torch.randn(32, 8, generator=generator)
        return torch.nn.functional.mse_loss(model(x), target(x))

    result = train(step, {"student": model, "target": target}, optimizer, n_iters, workdir / "ckpt", 3, seed,
                   workdir / "loss.csv", lr_scheduler=schedule, progress=False)
    return model, result


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_loss_falls_and_log_has_every_iteration(tmp_path):
    _, result = tiny_run(tmp_path)
    log = read_log(tmp_path / "loss.csv")
    assert [row["iteration"] for row in log] == list(range(1, N_ITERS + 1))
    assert all(row["it_per_s"] > 0 for row in log)
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    assert (tmp_path / "ckpt" / CHECKPOINT_NAME).exists()


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    first, _ = tiny_run(tmp_path / "a")
    again, _ = tiny_run(tmp_path / "b")
    other, _ = tiny_run(tmp_path / "c", seed=4)
    assert _same_weights(first, again)
    assert not _same_weights(first, other)


def test_resume_from_checkpoint_matches_uninterrupted(tmp_path):
    whole, _ = tiny_run(tmp_path / "whole")
    tiny_run(tmp_path / "split", n_iters=7)  # checkpoints at 3, 6 and 7 (the end)
    resumed, result = tiny_run(tmp_path / "split")
    assert result.resumed_from == 7
    assert _same_weights(whole, resumed)
    assert [r["iteration"] for r in read_log(tmp_path / "split" / "loss.csv")] == list(range(1, N_ITERS + 1))


def test_kill_9_then_rerun_ends_with_the_uninterrupted_weights(tmp_path):
    whole, _ = tiny_run(tmp_path / "whole")
    killed = tmp_path / "killed"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from pathlib import Path; "
            f"from test_distill_loop import tiny_run; tiny_run(Path({str(killed)!r}), pause=0.15)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    checkpoint = killed / "ckpt" / CHECKPOINT_NAME
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # past the checkpoint, into the iterations it will lose
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if process.returncode != -signal.SIGKILL:
        pytest.fail(f"the training process ended before it was killed (rc {process.returncode})")
    reached = torch.load(checkpoint, weights_only=False)["iteration"]
    assert 0 < reached < N_ITERS
    resumed, result = tiny_run(killed)
    assert result.resumed_from == reached
    assert _same_weights(whole, resumed)
