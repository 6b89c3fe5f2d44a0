"""Atomic output writing and provenance records.

Every file a rule produces is written under a temporary name in the same directory and
renamed into place, so an interrupted job never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

PROVENANCE_PACKAGES = (
    "torch", "diffusers", "transformers", "numpy", "scikit-image", "open-clip-torch",
    "torchao", "lpips", "pytorch-fid", "torchmetrics", "constriction",
)


def _temporary_name(final: Path) -> Path:
    return final.parent / f".{final.name}.{secrets.token_hex(6)}.part"


def _create_file(final: Path) -> Path:
    """A new, empty temporary file beside ``final`` with the mode a plain open() would give (0666
    minus the umask). tempfile.mkstemp is not used: it makes 0600 files, which a group or a web
    server could not read once renamed into place."""
    while True:
        path = _temporary_name(final)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


def _create_dir(final: Path) -> Path:
    """Like ``_create_file`` for a directory (0777 minus the umask, not mkdtemp's 0700)."""
    while True:
        path = _temporary_name(final)
        try:
            path.mkdir(mode=0o777)
            return path
        except FileExistsError:
            continue


def remove_stale_parts(final: Path) -> None:
    """Remove what an earlier, killed attempt at ``final`` left (``.<name>.*.part``). Safe because
    Snakemake never runs two jobs for one output (its lock refuses a second run)."""
    # _temporary_name's 12-hex-digit random middle: `.a.*.part` alone would also match `.a.csv.*.part`
    own = re.compile(rf"\.{re.escape(final.name)}\.[0-9a-f]{{12}}\.part")
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*.part"):
        if not own.fullmatch(stale.name):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(final)
    tmp_path = _create_file(final)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; move it onto ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(final)
    tmp = _create_dir(final)
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """``fig.savefig`` under a temporary name, renamed into place (the format from ``path``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)


def unwritable_folders(roots: list[str]) -> list[str]:
    """Existing folders under ``roots`` that this process cannot write to (a read-only mount, no
    permission). Checked before the first job: Snakemake itself stops with a traceback when it
    cannot clear an output's place."""
    blocked = []
    for root in roots:
        for folder, subfolders, _ in os.walk(root):
            if not os.access(folder, os.W_OK):
                blocked.append(folder)
                subfolders.clear()  # one message per blocked tree
    return blocked


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame atomically (no index column)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def stable_hash(obj: Any) -> str:
    """A short, order-independent hash of a JSON-serialisable object."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": device,
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        from . import gpu_slots

        index = torch.device(device).index or 0
        info["gpu"] = torch.cuda.get_device_name(index)
        info["gpu_uuid"] = str(torch.cuda.get_device_properties(index).uuid)
        info["cuda"] = torch.version.cuda
        info["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        # The allocator's peak since the job started (or since its last reset_peak_memory_stats).
        info["max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated(index) / 2**20, 1)
        claim = gpu_slots.held_claim()
        if claim is not None:
            info["gpu_slot"] = claim.describe()
    return info


def provenance(params: dict[str, Any], device: str, **extra: Any) -> dict[str, Any]:
    """The record written beside each output set: what produced it, where, with what."""
    from . import __version__, codehash

    return {
        "sdsqueeze": __version__,
        # Where the package was imported from, its git commit and a hash of its source.
        "source": codehash.source_description(),
        # Hash of the config values this output depends on (the job's params).
        "config_hash": stable_hash(params),
        "params": params,
        "python": platform.python_version(),
        "packages": package_versions(),
        "device": device_description(device),
        **extra,
    }
