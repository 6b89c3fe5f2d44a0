"""Fixtures shared by the workflow tests."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def snakemake(snakemake_run):
    """The workflow on a work directory holding its config.yaml."""

    def run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
        return snakemake_run("-s", str(REPO / "Snakefile"), "-d", str(workdir),
                             "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args, timeout=None)

    return run
