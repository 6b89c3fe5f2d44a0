"""GPU placement for local multi-GPU runs, exercised with fake device lists on the CPU."""

import json
import os
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from sdsqueeze import gpu_slots, smk


@pytest.fixture(autouse=True)
def _release_claims():
    yield
    while gpu_slots._HELD:
        gpu_slots._HELD.pop().release()


def fake_gpus(n):
    return lambda: [str(i) for i in range(n)]


def test_concurrent_jobs_get_distinct_devices(tmp_path):
    envs = [{} for _ in range(3)]
    claims = [gpu_slots.claim_gpu(env, tmp_path, probe=fake_gpus(3), wait_s=0) for env in envs]
    assert sorted(env["CUDA_VISIBLE_DEVICES"] for env in envs) == ["0", "1", "2"]
    assert all(c.lock_path.parent == tmp_path for c in claims)


def test_more_jobs_than_gpus_fails_clearly_after_waiting(tmp_path):
    gpu_slots.claim_gpu({}, tmp_path, probe=fake_gpus(1), wait_s=0)
    with pytest.raises(RuntimeError, match="stayed busy"):
        gpu_slots.claim_gpu({}, tmp_path, probe=fake_gpus(1), wait_s=0.2, poll_s=0.05)


def test_released_slot_is_reused(tmp_path):
    first = gpu_slots.try_claim(["0", "1"], tmp_path)
    second = gpu_slots.try_claim(["0", "1"], tmp_path)
    assert (first.device, second.device) == ("0", "1")
    first.release()
    assert gpu_slots.try_claim(["0", "1"], tmp_path).device == "0"


def test_slurm_assignment_is_left_alone(tmp_path):
    env = {"SLURM_JOB_ID": "1234", "CUDA_VISIBLE_DEVICES": "3"}
    assert gpu_slots.claim_gpu(env, tmp_path, probe=fake_gpus(8)) is None
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert not list(tmp_path.iterdir())


def test_user_visible_devices_bound_the_choice(tmp_path):
    envs = [{"CUDA_VISIBLE_DEVICES": "2,5"} for _ in range(2)]
    for env in envs:
        gpu_slots.claim_gpu(env, tmp_path, probe=fake_gpus(8), wait_s=0)
    assert sorted(env["CUDA_VISIBLE_DEVICES"] for env in envs) == ["2", "5"]


def test_no_gpu_is_an_error_not_a_silent_cpu_run(tmp_path):
    with pytest.raises(RuntimeError, match="none is visible"):
        gpu_slots.claim_gpu({}, tmp_path, probe=lambda: [])


def test_lock_is_dropped_when_the_job_process_dies(tmp_path):
    """Two real processes: the second waits for the first's device, then gets it when it exits."""
    src = Path(gpu_slots.__file__).parents[1]
    holder = textwrap.dedent(f"""
        import sys, time; sys.path.insert(0, {str(src)!r})
        from pathlib import Path
        from sdsqueeze import gpu_slots
        env = {{}}
        gpu_slots.claim_gpu(env, Path({str(tmp_path)!r}), probe=lambda: ["0"], wait_s=0)
        print(env["CUDA_VISIBLE_DEVICES"], flush=True)
        time.sleep(1.0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "0"
    with pytest.raises(RuntimeError):
        gpu_slots.claim_gpu({}, tmp_path, probe=fake_gpus(1), wait_s=0)
    env = {}
    gpu_slots.claim_gpu(env, tmp_path, probe=fake_gpus(1), wait_s=30, poll_s=0.1)
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert proc.wait(timeout=30) == 0


def test_smk_run_claims_only_for_gpu_jobs(tmp_path, monkeypatch):
    claimed = []
    monkeypatch.setattr(gpu_slots, "claim_gpu", lambda: claimed.append(True))
    for gpus in (0, 1):
        job = types.SimpleNamespace(resources=types.SimpleNamespace(gpu=gpus), log=[str(tmp_path / "log")],
                                    threads=1, rule="r")
        smk.run(job, lambda _: None)
    assert claimed == [True]


def test_package_imports_start_no_cuda():
    """Claiming inside smk.run (after the script's imports) is only right if those imports never
    initialise CUDA, which would freeze the device list before CUDA_VISIBLE_DEVICES is set."""
    code = textwrap.dedent("""
        import torch
        calls = []
        for name in ("_cuda_getDeviceCount", "_cuda_init"):
            if hasattr(torch._C, name):
                orig = getattr(torch._C, name)
                setattr(torch._C, name, lambda *a, _o=orig, _n=name: calls.append(_n) or _o(*a))
        from sdsqueeze import generate, models, variants  # noqa: F401
        from sdsqueeze.quality import images  # noqa: F401
        print(calls, torch.cuda.is_initialized())
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(gpu_slots.__file__).parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "[] False"


def test_shared_gpus_fill_every_device_before_doubling_up(tmp_path):
    env_of = lambda: {gpu_slots.JOBS_PER_GPU_ENV: "2"}
    claims = [gpu_slots.claim_gpu(env_of(), tmp_path, probe=fake_gpus(2), wait_s=0) for _ in range(4)]
    assert [(c.device, c.slot) for c in claims] == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
    assert claims[2].describe() == {"cuda_visible_devices": "0", "slot": 1, "jobs_per_gpu": 2}
    with pytest.raises(RuntimeError, match="SDSQ_JOBS_PER_GPU"):
        gpu_slots.claim_gpu(env_of(), tmp_path, probe=fake_gpus(2), wait_s=0)


def test_bad_jobs_per_gpu_is_one_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="whole number"):
        gpu_slots.claim_gpu({gpu_slots.JOBS_PER_GPU_ENV: "two"}, tmp_path, probe=fake_gpus(1), wait_s=0)


def test_exclusive_use_waits_for_the_job_using_a_shared_gpu(tmp_path):
    """Two jobs on one GPU: the second's exclusive block starts only after the first's ends (flock
    on two open files conflicts within one process too, so a thread stands in for the other job)."""
    import threading

    gpu_slots.claim_gpu({gpu_slots.JOBS_PER_GPU_ENV: "2"}, tmp_path, probe=fake_gpus(1), wait_s=0)
    inside, spans = threading.Event(), {}

    def other_job():
        with gpu_slots.exclusive_use():
            spans["other"] = time.monotonic()
            inside.set()
            time.sleep(0.5)

    thread = threading.Thread(target=other_job)
    thread.start()
    inside.wait(10)
    with gpu_slots.exclusive_use() as waited:
        spans["ours"] = time.monotonic()
    thread.join()
    assert waited >= 0.4 and spans["ours"] - spans["other"] >= 0.45


def test_exclusive_use_is_free_with_one_job_per_gpu(tmp_path):
    gpu_slots.claim_gpu({}, tmp_path, probe=fake_gpus(1), wait_s=0)
    with gpu_slots.exclusive_use() as first, gpu_slots.exclusive_use() as nested:
        assert (first, nested) == (0.0, 0.0)


def test_resources_gpu_2_runs_two_jobs_at_once_on_different_devices(tmp_path):
    """`snakemake --resources gpu=2` on a machine whose (fake) nvidia-smi lists two GPUs: the two
    GPU jobs overlap in time, each with its own CUDA_VISIBLE_DEVICES."""
    src = Path(gpu_slots.__file__).parents[1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    (tmp_path / "job.py").write_text(textwrap.dedent(f"""
        import json, os, sys, time
        sys.path.insert(0, {str(src)!r})
        from sdsqueeze import smk

        def main(snakemake):
            began = time.time()
            time.sleep(2)
            record = {{"device": os.environ["CUDA_VISIBLE_DEVICES"], "began": began, "ended": time.time()}}
            open(snakemake.output[0], "w").write(json.dumps(record))

        smk.run(snakemake, main)
    """))
    (tmp_path / "Snakefile").write_text(textwrap.dedent("""
        rule all:
            input: expand("out/{k}.json", k=[1, 2])
        rule gpu_job:
            output: "out/{k}.json"
            log: "logs/{k}.log"
            resources: gpu=1
            script: "job.py"
    """))
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               SDSQ_GPU_LOCK_DIR=str(tmp_path / "locks"))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("SLURM_JOB_ID", None)
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = [json.loads((tmp_path / "out" / f"{k}.json").read_text()) for k in (1, 2)]
    assert sorted(j["device"] for j in jobs) == ["0", "1"]
    assert max(j["began"] for j in jobs) < min(j["ended"] for j in jobs)  # they overlapped
