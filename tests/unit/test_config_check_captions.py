"""`snakemake -n` refuses a malformed captions file or an impossible prompts.n at config check:
in seconds, with one message naming the file and the problem (no DAG of 100 000 prompts)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from smk_rules import ROOT


def dry_run(snakemake_run, tmp_path, **prompts) -> tuple[subprocess.CompletedProcess, float]:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["prompts"].update(prompts)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    began = time.perf_counter()
    out = snakemake_run("-n", "--configfile", str(path), timeout=120,
                        env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    return out, time.perf_counter() - began


def error_lines(out) -> list[str]:
    return [line for line in (out.stdout + out.stderr).splitlines() if "invalid config" in line]


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    (json.dumps({"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 2, "caption": "a b c d e f"}]}),
     "image_id 2 is not in 'images'"),
], ids=["not-json", "dangling-annotation"])
def test_malformed_captions_file_is_refused_by_a_dry_run(snakemake_run, tmp_path, content, problem):
    captions = tmp_path / "captions.json"
    captions.write_text(content)
    out, seconds = dry_run(snakemake_run, tmp_path, captions=str(captions))
    assert out.returncode != 0
    [line] = error_lines(out)
    assert str(captions) in line and problem in line
    assert seconds < 20


def test_prompt_count_beyond_the_usable_captions_is_refused_by_a_dry_run(snakemake_run, tmp_path):
    default_captions = yaml.safe_load((ROOT / "config.yaml").read_text())["prompts"]["captions"]
    out, seconds = dry_run(snakemake_run, tmp_path, n=100000)
    assert out.returncode != 0
    [line] = error_lines(out)
    assert default_captions in line and "prompts.n = 100000" in line
    assert seconds < 20
