"""Shared fixtures: the embedded tiny model saved once per session, the `.test/` configs, and one
way to run Snakemake. Tests under tests/workflow/ (those that run the real DAG) are marked slow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmark harness (sdbench) lives outside the package
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see scripts/_srcpath.py


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def pytest_collection_modifyitems(items):
    """Everything under tests/workflow/ spawns Snakemake on a real DAG: slow, deselect with -m 'not slow'."""
    for item in items:
        if "workflow" in Path(str(item.fspath)).relative_to(REPO / "tests").parts[:-1]:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def triton_interpreter():
    """``triton_interpreter(script)``: the script's stdout, run in a fresh Python under Triton's
    interpreter (TRITON_INTERPRET is read at import, so never in this process); fails on a non-zero exit."""
    pytest.importorskip("triton")

    def run(script: str) -> str:
        env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO / "src")}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    return run


@pytest.fixture(scope="session")
def test_config():
    """``test_config(name)``: .test/<name>/config.yaml as a dict (smallest, unfitted, cluster)."""

    def load(name: str) -> dict:
        return yaml.safe_load((REPO / ".test" / name / "config.yaml").read_text())

    return load


@pytest.fixture(scope="session")
def snakemake_run():
    """``snakemake_run(*args, cwd=..., check=..., timeout=...)``: Snakemake of this interpreter in
    ``cwd`` (default: the repository), output captured, offline; ``check`` asserts it succeeded."""

    def run(*args: str, cwd: str | Path = REPO, check: bool = False, timeout: float | None = 900,
            env: dict | None = None) -> subprocess.CompletedProcess:
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True,
                                text=True, timeout=timeout, env=environment)
        if check:
            assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        return result

    return run


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny model at 64 px, written with save_pretrained like the materialize_model rule does."""
    from sdsqueeze.models import TinySpec, save_tiny_pipeline

    out = tmp_path_factory.mktemp("tiny") / "pipeline"
    save_tiny_pipeline(out, TinySpec(image_size=64))
    return out


@pytest.fixture
def tiny_pipe(tiny_dir):
    from sdsqueeze.models import load_pipeline

    return load_pipeline(str(tiny_dir))


@pytest.fixture
def base_spec() -> dict:
    return {"name": "t", "dtype": "float32", "attention": "classic", "scheduler": "pndm",
            "steps": 4, "guidance": 7.5, "height": 64, "width": 64, "batch_size": 2}
