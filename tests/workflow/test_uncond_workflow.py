"""The unconditional overlay (config/uncond-smoke.yaml) through the real DAG at its smallest: the
embedded LDM is built, read back as an LDMPipeline, sampled from the seeded sample list, quantized
W/O and W, and the report shows the seed's LSUN table."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def smallest(config: dict) -> dict:
    """The overlay cut to seconds: few samples and steps, short fits, short reconstruction."""
    config["model"].update(tiny_vae_fit_steps=20, tiny_unet_fit_steps=20)
    config["prompts"].update(n=4, shard_size=4)
    config["generation"].update(steps=5, batch_size=4)
    config["calibration"] = {"samples": 4}
    config["metrics"]["bootstrap_resamples"] = 200
    for spec in config["variants"].values():
        if (spec or {}).get("ptq", {}).get("reconstruction"):
            spec["ptq"].update(recon_iterations=2, recon_samples=4, recon_batch_size=4)
    return config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, snakemake):
    workdir = tmp_path_factory.mktemp("uncond")
    config = smallest(yaml.safe_load((REPO / "config/uncond-smoke.yaml").read_text()))
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_samples_come_from_the_seeded_list_without_prompts(run_dir):
    samples = pd.read_csv(run_dir / "results/prompts/samples-32.csv")
    assert list(samples.columns) == ["prompt_id", "seed"] and len(samples) == 4
    manifest = pd.read_csv(run_dir / "results/images/tiny-uncond/fp32/shard-0/manifest.csv")
    assert sorted(manifest.seed) == sorted(samples.seed)
    assert manifest.unet_calls.min() == 5  # one UNet call per DDIM step: no guidance doubling


def test_metrics_say_why_prompt_metrics_are_missing(run_dir):
    per_image = pd.read_csv(run_dir / "results/metrics/tiny-uncond/per_image/w4a8-nocal.csv")
    assert per_image.psnr.notna().all() and per_image.clip_score.isna().all()
    assert per_image.clip_score_status.str.contains("unconditional").all()
    distribution = pd.read_csv(run_dir / "results/metrics/tiny-uncond/distribution.csv")
    fd = distribution[distribution.metric == "fd_effnetlite0"]
    assert (fd.status == "ok").all() and set(fd.variant) >= {"w8a8-nocal", "w8a8-noise", "w4a8-raw"}


def test_report_has_the_lsun_table(run_dir):
    html = (run_dir / "results/report/index.html").read_text()
    assert "Q-Diffusion&#x27;s LSUN table" in html or "Q-Diffusion's LSUN table" in html
    for label in ("Baseline", "W/O", "W (noise)", "W (raw data)", "FD-EffNetLite0", "W4A8", "W8A8"):
        assert label in html
