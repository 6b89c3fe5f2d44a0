"""A target naming a model, variant or shard the config lacks is refused by the dry run with one
message saying what is configured (no model build planned, no empty shard written)."""

from __future__ import annotations

import pytest


def dry_run(snakemake_run, target: str, tmp_path) -> str:
    out = snakemake_run("-n", target, timeout=120, env={"XDG_CACHE_HOME": str(tmp_path)})
    assert out.returncode != 0, f"{target} was accepted"
    return out.stdout + out.stderr


@pytest.mark.parametrize("target, problem", [
    ("results/images/tni/fp32-classic/shard-0", "model 'tni' is not configured (model.name: tiny)"),
    ("resources/models/tni/model.json", "model 'tni' is not configured (model.name: tiny)"),
    ("results/images/tiny/fp32-classic/shard-7",
     "shard 7 is beyond the prompt set (prompts.n 8 in shards of 8: shard 0 to 0)"),
    ("results/images/tiny/fp33-classic/shard-0", "variant 'fp33-classic' is not configured (variants: bf16-sdpa,"),
    ("results/metrics/tiny/per_image/fp33-classic.csv",
     "variant 'fp33-classic' is not configured (variants: bf16-sdpa,"),
], ids=["model", "model-build", "shard", "variant", "variant-metrics"])
def test_target_outside_the_config_is_refused_naming_what_is_configured(snakemake_run, target, problem, tmp_path):
    text = dry_run(snakemake_run, target, tmp_path)
    assert problem in text
    assert "Job stats" not in text  # nothing planned
