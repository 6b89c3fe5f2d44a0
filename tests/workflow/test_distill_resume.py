"""kill -9 in the middle of a student's training job, then the same command: the job resumes
from its last checkpoint and the student's weights equal an undisturbed run's, byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from smk_rules import ROOT
from test_faults import IGNORE, TINY, kill_run, recover, snakemake, start, wait_for

pytestmark = pytest.mark.slow

STUDENT = "bk"
RECORD = f"resources/models/{STUDENT}/student.json"
WEIGHTS = f"resources/models/{STUDENT}/pipeline/unet/diffusion_pytorch_model.safetensors"
WORK = Path(f"resources/distill/tiny/{STUDENT}/work")
CONFIG = {
    **TINY,
    "model": {**TINY["model"], "tiny_weights": "seeded"},
    "distill": {"enabled": True, "prompts": 2, "batch_size": 2, "students": {
        STUDENT: {"method": "bksdm", "remove": ["mid_block", "innermost_stage"], "iterations": 40,
                  "batch_size": 2, "checkpoint_every": 4}}},
}


def test_killed_training_resumes_from_its_checkpoint_and_ends_with_the_same_weights(tmp_path):
    workdir = tmp_path / "wf"
    shutil.copytree(ROOT, workdir, ignore=IGNORE)
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(workdir, RECORD)
    undisturbed = (workdir / WEIGHTS).read_bytes()
    losses = (workdir / f"results/distill/tiny/{STUDENT}/loss.csv").read_text()

    shutil.rmtree(workdir / f"resources/models/{STUDENT}")
    assert not (workdir / WORK).exists()  # removed once the student is saved
    run = start(workdir, RECORD, "--forcerun", "distill_student")

    def logged_past_a_checkpoint():  # the work folder is named by a hash of the training's inputs
        logs = list((workdir / WORK).glob("*/loss.csv"))
        return logs and (logs[0].parent / "last.pt").exists() and len(logs[0].read_text().splitlines()) > 7

    wait_for(logged_past_a_checkpoint, timeout=600)
    kill_run(run)
    assert not (workdir / RECORD).exists()
    assert list((workdir / WORK).glob("*/last.pt"))  # the checkpoint survives the failed job

    recover(workdir, RECORD)
    summary = json.loads((workdir / f"results/distill/tiny/{STUDENT}/summary.json").read_text())
    assert summary["phases"][0]["resumed_from"] >= 4  # it did not start over
    assert (workdir / WEIGHTS).read_bytes() == undisturbed
    # The loss log of the resumed run repeats the undisturbed one, row for row (less the speeds).
    strip = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731
    assert strip((workdir / f"results/distill/tiny/{STUDENT}/loss.csv").read_text()) == strip(losses)
