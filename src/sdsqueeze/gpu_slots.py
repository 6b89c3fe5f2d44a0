"""One GPU per concurrent job on a multi-GPU workstation.

`resources: gpu=1` with `--resources gpu=N` only caps how many GPU jobs Snakemake runs at once;
every job would still see all GPUs and pick `cuda:0`. Before torch touches CUDA, a GPU job claims
a free device slot (an exclusive `flock` on one file per device under a lock directory) and
restricts itself to it through CUDA_VISIBLE_DEVICES. The kernel drops the lock when the job's
process ends, however it ends, so a crashed job never leaves a slot taken.

Schedulers that assign GPUs themselves are left alone: inside a SLURM job (SLURM_JOB_ID set)
SLURM has already set CUDA_VISIBLE_DEVICES to the job's GPUs. A user's own CUDA_VISIBLE_DEVICES
is respected: slots are taken among the devices it lists.

Snakemake has no per-device assignment of its own for local runs, and CUDA's device selection is
per process, hence this small module.

One GPU may also hold several jobs at once (SDSQ_JOBS_PER_GPU=k, with `--resources gpu=k x GPUs`):
their imports, model loading and compilation, mostly CPU and disk, overlap. The work that is timed
or GPU-heavy runs inside `exclusive_use()`, one job per device at a time, so a job's measured
seconds are not shared with another's kernels.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

LOCK_DIR_ENV = "SDSQ_GPU_LOCK_DIR"
JOBS_PER_GPU_ENV = "SDSQ_JOBS_PER_GPU"
log = logging.getLogger(__name__)


@dataclass
class GpuClaim:
    """A device slot held by this process (the lock lasts as long as `handle` stays open)."""

    device: str
    lock_path: Path
    handle: object
    slot: int = 0
    jobs_per_gpu: int = 1

    def release(self) -> None:
        self.handle.close()

    def describe(self) -> dict:
        return {"cuda_visible_devices": self.device, "slot": self.slot, "jobs_per_gpu": self.jobs_per_gpu}


# Claims live as long as the process: the job keeps its device until it exits.
_HELD: list[GpuClaim] = []


def default_lock_dir() -> Path:
    """Shared by every job (and every Snakemake) of this user on this machine."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"sdsqueeze-gpu-locks-{os.getuid()}")


def nvidia_smi_devices() -> list[str]:
    """Indices of the machine's GPUs, asked of nvidia-smi (which, unlike torch, starts no CUDA context)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def candidate_devices(env: Mapping[str, str], probe: Callable[[], list[str]] = nvidia_smi_devices) -> list[str]:
    """Devices a job may take: those in CUDA_VISIBLE_DEVICES when set, else every GPU found."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return probe()


def managed_by_scheduler(env: Mapping[str, str]) -> bool:
    """True inside a SLURM job: SLURM binds the job's GPUs, placing them again would be wrong."""
    return bool(env.get("SLURM_JOB_ID"))


def jobs_per_gpu(env: Mapping[str, str]) -> int:
    value = env.get(JOBS_PER_GPU_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise RuntimeError(f"{JOBS_PER_GPU_ENV}={value!r}: give a whole number of jobs per GPU, 1 or more")
    return int(value)


def slot_lock_name(device: str, slot: int) -> str:
    return f"gpu-{device}.lock" if slot == 0 else f"gpu-{device}.slot{slot}.lock"


def try_claim(devices: list[str], lock_dir: Path, per_gpu: int = 1) -> GpuClaim | None:
    """Take the first free device slot, or None when all are held. Every device's first slot is
    tried before any second one, so jobs spread over the GPUs before they share one."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot, device in ((k, d) for k in range(per_gpu) for d in devices):
        path = lock_dir / slot_lock_name(device, slot)
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return GpuClaim(device, path, handle, slot, per_gpu)
    return None


def claim_gpu(env: MutableMapping[str, str] | None = None, lock_dir: Path | None = None,
              probe: Callable[[], list[str]] = nvidia_smi_devices, wait_s: float = 3600,
              poll_s: float = 2.0) -> GpuClaim | None:
    """Give this process one GPU of its own by setting CUDA_VISIBLE_DEVICES in `env` (os.environ).

    Must run before torch initialises CUDA. Returns the claim, or None when nothing was changed
    (inside SLURM). Waits up to `wait_s` when every slot is held (by another Snakemake run, say);
    raises RuntimeError when the machine shows no GPU or none frees up in time.
    """
    env = os.environ if env is None else env
    if _HELD and env.get("CUDA_VISIBLE_DEVICES") == _HELD[-1].device:
        return _HELD[-1]  # claimed already (by the script before smk.run, say)
    if managed_by_scheduler(env):
        log.info("GPU placement left to SLURM (job %s, CUDA_VISIBLE_DEVICES=%s)",
                 env.get("SLURM_JOB_ID"), env.get("CUDA_VISIBLE_DEVICES"))
        return None
    devices = candidate_devices(env, probe)
    if not devices:
        raise RuntimeError("this job asks for a GPU but none is visible (nvidia-smi found none and "
                           "CUDA_VISIBLE_DEVICES lists none); use a CPU config (device: cpu)")
    lock_dir = lock_dir or default_lock_dir()
    deadline = time.monotonic() + wait_s
    per_gpu = jobs_per_gpu(env)
    while (claim := try_claim(devices, lock_dir, per_gpu)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"all GPUs {devices} stayed busy for {wait_s:.0f} s (locks in {lock_dir}); "
                               f"is --resources gpu=N larger than the number of GPUs times {JOBS_PER_GPU_ENV} ({per_gpu})?")
        time.sleep(poll_s)
    env["CUDA_VISIBLE_DEVICES"] = claim.device
    _HELD.append(claim)
    log.info("GPU slot %s claimed (CUDA_VISIBLE_DEVICES=%s, lock %s)", claim.device, claim.device, claim.lock_path)
    return claim


def held_claim() -> GpuClaim | None:
    return _HELD[-1] if _HELD else None


@contextlib.contextmanager
def exclusive_use(lock_dir: Path | None = None):
    """Run the block as the only job on this process's claimed device (a no-op when one job per GPU
    is the rule, or the job holds no claim: CPU jobs, SLURM's placement). Yields the seconds
    waited for the device, which the caller may record."""
    claim = held_claim()
    if claim is None or claim.jobs_per_gpu == 1:
        yield 0.0
        return
    began = time.monotonic()
    with open((lock_dir or claim.lock_path.parent) / f"gpu-{claim.device}.exclusive.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the job using the device alone is done
        yield time.monotonic() - began
