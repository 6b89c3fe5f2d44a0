"""The Snakemake profiles: rendered by Snakemake's own profile parser, complete, and sized for a cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from smk_rules import ROOT, read_rules
from snakemake.profiles import ProfileConfigFileParser

PROFILES = ROOT / "profiles"
SLURM = PROFILES / "slurm" / "config.yaml"
SITE_VARS = ["SDSQ_PARTITION", "SDSQ_ACCOUNT", "SDSQ_RUNTIME", "SDSQ_MEM_MB", "SDSQ_GPU_MODEL",
             "SDSQ_JOBS", "SDSQ_GROUP_SIZE"]


def render(path: Path) -> dict:
    with path.open() as stream:
        return ProfileConfigFileParser().parse(stream)


@pytest.fixture
def no_site_vars(monkeypatch):
    for var in SITE_VARS:
        monkeypatch.delenv(var, raising=False)


def test_slurm_defaults_without_site_settings(no_site_vars):
    profile = render(SLURM)
    assert profile["executor"] == "slurm"
    assert profile["default-resources"] == ["runtime=60", "mem_mb=4000"]  # no partition/account: the cluster's
    assert "set-resources" not in profile
    assert profile["retries"] == "2" and profile["rerun-incomplete"] == "True"
    assert profile["jobs"] == "50"


def test_slurm_takes_site_settings_from_the_environment(no_site_vars, monkeypatch):
    monkeypatch.setenv("SDSQ_PARTITION", "all")  # a Python builtin's name: must stay a string
    monkeypatch.setenv("SDSQ_ACCOUNT", "lab-42")
    monkeypatch.setenv("SDSQ_RUNTIME", "120")
    monkeypatch.setenv("SDSQ_GPU_MODEL", "a100")
    monkeypatch.setenv("SDSQ_GROUP_SIZE", "4")
    profile = render(SLURM)
    assert profile["default-resources"] == ["slurm_partition='all'", "slurm_account='lab-42'",
                                            "runtime=120", "mem_mb=4000"]
    assert profile["set-resources"] == [f"{rule}:gpu_model='a100'" for rule in gpu_rules()]
    assert "generate=4" in profile["group-components"]


def gpu_rules() -> list[str]:
    return sorted(r.name for r in read_rules() if re.search(r"\bgpu\s*=|\bgpu_job\(", r.directives.get("resources", "")))


def test_profile_knows_every_gpu_rule():
    """SDSQ_GPU_MODEL reaches the rules listed in GPU_RULES; a new GPU rule must be added there."""
    listed = re.search(r"GPU_RULES = \[(.*)\]", SLURM.read_text()).group(1)
    assert sorted(re.findall(r'"(\w+)"', listed)) == gpu_rules()


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*/config.yaml")), ids=lambda p: p.parent.name)
def test_every_profile_entry_is_commented(path):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z?][\w-]*.*:", line) and not line.startswith("?"):
            before = [text for text in lines[:i] if text.strip()][-1]
            assert before.lstrip().startswith("#"), f"{path}: `{line}` has no comment above it"


@pytest.mark.parametrize("layer", ["slurm-ci", "local"])
def test_other_profiles_render(layer, no_site_vars):
    profile = render(PROFILES / layer / "config.yaml")
    if layer == "slurm-ci":
        assert profile["slurm-status-command"] == "squeue"
        assert profile["cores"] == str(os.cpu_count())
    else:
        # venv users have no conda: the profile must not ask for it (--use-conda stays opt-in)
        assert profile["cores"] == "all" and "use-conda" not in profile
        assert not profile.get("software-deployment-method")


def submissions(dry_run_output: str) -> int:
    """SLURM submissions a dry run plans: one per group job plus one per job outside any group
    (localrules counted too, so this is an upper bound)."""
    group_jobs = len(re.findall(r"^\[.*\] Group job ", dry_run_output, re.M))
    single_jobs = len(re.findall(r"^rule \w+:", dry_run_output, re.M))
    return group_jobs + single_jobs


OWN_TARGETS = {"accel_benchmark"}  # GPU rules outside `all`, run by their own target (`benchmark_all`)
# GPU rules config/sd15.yaml does not plan: the distill stage's (off there; config/sd15-distill.yaml's
# dry run in .ci/run plans them) and the embedded model's retraining (model.tiny_weights: fit only).
OTHER_CONFIGS = {"distill_student", "distill_teacher_data", "fit_tiny_model"}


def test_sd15_plans_gpu_jobs_in_few_submissions(no_site_vars, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "-n", "--configfile", "config/sd15.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)))
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    jobs = re.findall(r"^ *rule (\w+):\n(?:.*\n)*?^ *resources: (.*)$", text, re.M)
    assert jobs
    for rule in gpu_rules():
        if rule in OWN_TARGETS | OTHER_CONFIGS or rule == "materialize_model":  # a GPU only to draw sd15-seeded's weights
            continue
        resources = [res for name, res in jobs if name == rule]
        assert resources, f"no {rule} job planned"
        assert all(re.search(r"\bgpu=1\b", res) for res in resources), f"{rule} jobs without gpu=1"
    n = submissions(text)
    print(f"SD 1.5 grid: {len(jobs)} jobs in {n} submissions")
    assert n < 100
    assert n < len(jobs) / 3  # grouping actually happened


def test_gpu_smoke_config_draws_the_seeded_model_on_a_gpu_under_slurm(no_site_vars, tmp_path):
    """sd15-seeded's weights are drawn on the GPU: its materialize_model job asks SLURM for one."""
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "-n", "--configfile", "config/sd15.yaml",
         "config/sd15-gpu-smoke.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)))
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = re.findall(r"^ *rule (\w+):\n(?:.*\n)*?^ *resources: (.*)$", out.stdout + out.stderr, re.M)
    assert [res for name, res in jobs if name == "materialize_model" and re.search(r"\bgpu=1\b", res)]
