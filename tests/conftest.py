"""Shared fixtures: the embedded tiny model, saved once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmark harness (sdbench) lives outside the package
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see scripts/_srcpath.py


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


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
