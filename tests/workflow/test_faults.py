"""The fault suite: a tiny experiment in a copy of the workflow, hurt the way machines hurt runs.

kill -9 in the middle of a training job (the tiny model's fit) and of a generate job, and just
after a job renamed its output into place; a full disk; a read-only results folder; two runs at
once; an edit to a module the jobs import. After each: no file that looks complete is left
behind, and the recovery README's "After an interrupted run" gives (`snakemake --unlock`, then
the same command) ends with results byte-identical to an undisturbed run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from smk_rules import ROOT

pytestmark = pytest.mark.slow

TINY = {
    "seed": 7, "device": "cpu", "threads": 1,
    # A retraining of a few steps: the model build is a real (short) training job, deterministic on the CPU.
    "model": {"name": "tiny", "source": "tiny", "tiny_image_size": 64, "tiny_weights": "fit",
              "tiny_fit": {"images": 16, "vae_steps": 3, "vae_batch": 4, "unet_steps": 3, "unet_batch": 4,
                           "warmup_steps": 1}},
    "prompts": {"name": "p", "captions": "data/coco_tiny_captions.json", "n": 2, "shard_size": 2},
    "generation": {"steps": 2, "height": 64, "width": 64, "batch_size": 2},
    "variants": {"fp32-classic": {}},
    "reference": "fp32-classic",
    "sweep": {"enabled": False},
    "diffc": {"enabled": False},
}
MODEL = "resources/models/tiny/model.json"
SHARD = "results/images/tiny/fp32-classic/shard-0"
IGNORE = shutil.ignore_patterns(".git", ".venv", ".snakemake", "results", "resources", "logs", "tests",
                                "__pycache__", "*.egg-info", ".pytest_cache")


def command(workdir: Path, *args) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", "1", *args]


def env(workdir: Path) -> dict:
    return dict(os.environ, XDG_CACHE_HOME=str(workdir / ".cache"))


def snakemake(workdir: Path, *args, check=True) -> subprocess.CompletedProcess:
    out = subprocess.run(command(workdir, *args), cwd=workdir, capture_output=True, check=False, text=True,
                         timeout=600, env=env(workdir))
    if check:
        assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return out


def start(workdir: Path, *args) -> subprocess.Popen:
    """A run in the background, in its own process group (so kill -9 reaches its jobs too)."""
    return subprocess.Popen(command(workdir, *args), cwd=workdir, env=env(workdir), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout=300.0, poll=0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the run to get there"
        time.sleep(poll)


def kill_run(run: subprocess.Popen) -> None:
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate(timeout=60)


def without_timings(record):
    """A JSON record less every "...seconds" key (wall times of its phases), at any depth."""
    if isinstance(record, dict):
        return {k: without_timings(v) for k, v in record.items() if not k.endswith("seconds")}
    return [without_timings(v) for v in record] if isinstance(record, list) else record


def deterministic_bytes(path: Path) -> bytes:
    """The file's bytes, less what a run cannot repeat: timings, peak memory, the host."""
    if path.name == "manifest.csv":
        timings = ["seconds", "cpu_seconds", "warmup_seconds", "unet_ms_step", "peak_memory_mb"]
        return pd.read_csv(path).drop(columns=timings, errors="ignore").to_csv(index=False).encode()
    if path.name in ("model.json", "training.json"):  # the training record, inside model.json too
        return json.dumps(without_timings(json.loads(path.read_text())), sort_keys=True).encode()
    if path.name == "provenance.json":
        record = json.loads(path.read_text())
        record.pop("device", None)
        record.get("checksums", {}).pop("manifest.csv", None)  # the manifest holds timings
        return json.dumps(record, sort_keys=True).encode()
    return path.read_bytes()


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file of ``folder``, as far as the run determines it."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(deterministic_bytes(p)).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def part_folders(workdir: Path) -> list[Path]:
    return [p for p in (workdir / "results").rglob(".*.part")] + [p for p in (workdir / "resources").rglob(".*.part")]


def recover(workdir: Path, *targets: str) -> None:
    """README's "After an interrupted run": `snakemake --unlock`, then the same command."""
    snakemake(workdir, "--unlock")
    snakemake(workdir, *targets)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """The experiment run once, undisturbed; its bytes are what every recovery must give."""
    workdir = tmp_path_factory.mktemp("faults") / "wf"
    shutil.copytree(ROOT, workdir, ignore=IGNORE)
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    snakemake(workdir, SHARD)
    reference = {"model": digest(workdir / "resources/models/tiny"), "shard": digest(workdir / SHARD)}
    assert any(name.endswith(".png") for name in reference["shard"])
    source = json.loads((workdir / SHARD / "provenance.json").read_text())["source"]
    assert Path(source["path"]).resolve() == (workdir / "src" / "sdsqueeze").resolve()  # its own code
    return workdir, reference


def test_kill_during_training_then_recovery_gives_identical_model(workflow):
    workdir, reference = workflow
    shutil.rmtree(workdir / "resources/models/tiny")
    run = start(workdir, MODEL)
    wait_for(lambda: part_folders(workdir), poll=0.05)  # the model is being fitted into its .part folder
    kill_run(run)
    assert not (workdir / MODEL).exists() and not (workdir / "resources/models/tiny/pipeline").exists()
    recover(workdir, MODEL)
    assert digest(workdir / "resources/models/tiny") == reference["model"]
    assert part_folders(workdir) == []


def test_kill_during_generation_then_recovery_gives_identical_images(workflow):
    workdir, reference = workflow
    shutil.rmtree(workdir / SHARD)
    run = start(workdir, SHARD)
    wait_for(lambda: part_folders(workdir), poll=0.05)  # the job is writing its shard
    kill_run(run)
    assert not (workdir / SHARD).exists()  # nothing that looks complete
    assert part_folders(workdir)  # the killed attempt's leftovers ...
    recover(workdir, SHARD)
    assert digest(workdir / SHARD) == reference["shard"]
    assert part_folders(workdir) == []  # ... removed by the next attempt


def test_kill_just_after_the_rename_then_plain_rerun_recovers(workflow):
    """The output is in place but Snakemake never recorded the job as done: it is incomplete."""
    workdir, reference = workflow
    shutil.rmtree(workdir / SHARD)
    run = start(workdir, SHARD)
    wait_for(lambda: (workdir / SHARD).exists(), poll=0.002)
    kill_run(run)
    incomplete = workdir / ".snakemake" / "incomplete"
    assert any(incomplete.rglob("*")), "the kill came after Snakemake had finished the job"
    snakemake(workdir, "--unlock")
    # Without profiles/default (rerun-incomplete) a plain rerun stops here, as it used to:
    bare = snakemake(workdir, "--workflow-profile", "none", "-n", SHARD, check=False)
    assert bare.returncode != 0 and "IncompleteFilesException" in bare.stdout + bare.stderr
    recover(workdir, SHARD)  # with it, the shard is redone
    assert digest(workdir / SHARD) == reference["shard"]
    assert snakemake(workdir, "-n", SHARD).stdout.count("Nothing to be done") == 1


def fill(mountpoint: Path) -> None:
    """Leave no free block on the file system at ``mountpoint``."""
    with open(mountpoint / "filler", "wb", buffering=0) as handle:  # unbuffered: nothing left for close()
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC


def mount_tmpfs(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                         capture_output=True, check=False, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {out.stderr.strip()}")


@pytest.fixture
def variant_folder(workflow):
    """The shard's folder emptied, to be replaced by a mount; unmounted afterwards."""
    workdir, _ = workflow
    folder = workdir / SHARD.rsplit("/", 1)[0]
    shutil.rmtree(folder, ignore_errors=True)
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)


def assert_clean_failure(out: subprocess.CompletedProcess, folder: Path, message: str) -> None:
    assert out.returncode != 0
    assert re.search(message, out.stdout + out.stderr), (out.stdout + out.stderr)[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    leftovers = [p.name for p in folder.iterdir() if p.name != "filler"]
    assert leftovers == []  # no shard, not even a half-written one


def test_full_disk_fails_cleanly(workflow, variant_folder):
    workdir, _ = workflow
    mount_tmpfs(variant_folder, "size=256k")
    fill(variant_folder)
    out = snakemake(workdir, SHARD, check=False)
    assert_clean_failure(out, variant_folder, r"ERROR \(generate\): .*No space left on device")


def test_read_only_results_fail_cleanly(workflow, variant_folder):
    workdir, _ = workflow
    as_root = os.geteuid() == 0
    if as_root:  # root writes through file modes: only a read-only mount stops it
        mount_tmpfs(variant_folder, "ro,size=64k")
    else:
        variant_folder.mkdir(parents=True)
        variant_folder.chmod(0o555)
    try:
        out = snakemake(workdir, SHARD, check=False)
    finally:
        if not as_root:
            variant_folder.chmod(0o755)
    assert_clean_failure(out, variant_folder, rf"ERROR: cannot write to \S*{SHARD.rsplit('/', 1)[0]} "
                                              r"\(read-only file system or no permission\)")


def test_second_run_at_once_is_refused(workflow):
    workdir, reference = workflow
    shutil.rmtree(workdir / "resources/models/tiny")
    for leftover in part_folders(workdir):  # an earlier test's: only the first run's own may count below
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    first = start(workdir, MODEL)
    # a part folder exists only once the first run's job runs, i.e. after it took the lock
    wait_for(lambda: part_folders(workdir), poll=0.05)
    os.killpg(first.pid, signal.SIGSTOP)  # paused, it keeps its lock however fast the fit would end
    try:
        # the target first: --forcerun takes every value after it
        second = snakemake(workdir, MODEL, "--forcerun", "materialize_model", check=False)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert second.returncode != 0 and "cannot be locked" in second.stdout + second.stderr
    assert first.wait(timeout=600) == 0, first.stdout.read()[-3000:]
    assert digest(workdir / "resources/models/tiny") == reference["model"]


def planned(workdir: Path) -> dict[str, int]:
    text = snakemake(workdir, "-n", SHARD).stdout
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


@pytest.mark.parametrize("module, reruns", [
    ("generate.py", {"generate": 1}),  # imported by the generate job only
    ("tinytrain.py", {"fit_tiny_model": 1, "materialize_model": 1, "generate": 1}),  # the training, the build, its users
])
def test_editing_a_module_reruns_the_rules_that_import_it_and_their_dependants(workflow, module, reruns):
    workdir, _ = workflow
    snakemake(workdir, SHARD)
    assert planned(workdir) == {}
    source = workdir / "src" / "sdsqueeze" / module
    original = source.read_text()
    source.write_text(original + "# a one-line edit\n")
    try:
        assert planned(workdir) == reruns
    finally:
        source.write_text(original)
    assert planned(workdir) == {}


def test_readme_recovery_is_what_this_suite_does():
    text = " ".join((ROOT / "README.md").read_text().split())
    paragraph = text.split("After an interrupted run", 1)[1].split(". On a", 1)[0]
    assert "`snakemake --unlock`, then the same command" in paragraph  # recover() above
    assert "half-done jobs are redone" in paragraph and ".*.part" in paragraph
