"""The DAG's path: shard encode -> decode -> rate-distortion table; the rate is the file on disk."""

import numpy as np
import pandas as pd
import pytest
import torch

from sdsqueeze.diffc import runs
from sdsqueeze.models import TinySpec, build_tiny_pipeline

CFG = {"recon_timesteps": [500, 250], "step_stride": 250, "max_chunk_bits": 8, "margin_bits": 2,
       "denoise_steps": 4, "block_rows_log2": 12, "size": 64}


def test_shard_round_trip_and_rate_is_file_size(tmp_path):
    torch.set_num_threads(1)
    pipe = build_tiny_pipeline(TinySpec(image_size=64))
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    runs.encode_shard(pipe, ["coffee"], CFG, global_seed=42, out_dir=enc)
    runs.decode_shard(pipe, enc, dec, redecode="all")
    table = runs.rate_distortion("tiny", [enc], [dec])

    coded = table[table.method == "diffc"].set_index("recon_timestep")
    for t in CFG["recon_timesteps"]:
        size = (enc / runs.rate_file("coffee", t)).stat().st_size
        assert coded.loc[t, "bpp"] == size * 8 / (64 * 64)
    assert coded.loc[250, "bpp"] > coded.loc[500, "bpp"]
    assert coded.redecode_identical.astype(bool).all()
    assert coded.loc[250, "latent_snr_db"] > coded.loc[500, "latent_snr_db"]
    vae = table[table.method == "vae"]
    assert len(vae) == 1 and np.isnan(vae.bpp.iloc[0])
    lpips = table.lpips.iloc[0]
    assert isinstance(lpips, float) or str(lpips).startswith("unavailable: ")
    steps = pd.read_csv(enc / "steps.csv")
    assert list(steps.timestep) == [750, 500, 250]
    # the worst chunk's KL minus its budget: per step, and per file (over its steps) in the RD table
    for t in CFG["recon_timesteps"]:
        assert coded.loc[t, "chunk_kl_excess_bits"] == steps[steps.timestep >= t].chunk_kl_excess_bits.max()
    assert (steps.side_bits > 0).all()


def test_unknown_image_names_are_refused_before_any_job():
    from sdsqueeze.diffc import images

    images.check_image_names(["astronaut", "coffee"])
    for name in ("download_all", "data_dir", "no_such_photo", "lily"):  # callables, data, downloads
        with pytest.raises(ValueError, match=name):
            images.check_image_names(["astronaut", name])
        with pytest.raises(ValueError, match="scikit-image photographs"):
            images.load_image(name, 64)


@pytest.mark.slow
def test_config_check_refuses_a_non_photograph_name(tmp_path):
    """`snakemake -n` stops at config check, naming the entry, before any job is planned."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "bad.yaml").write_text(
        f"diffc:\n  images: [astronaut, download_all]\nprompts:\n  captions: {repo}/data/coco_tiny_captions.json\n")
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(tmp_path),
                             "--configfile", str(repo / "config.yaml"), str(tmp_path / "bad.yaml"), "-n",
                             "--cores", "1"], check=False, capture_output=True, text=True)
    assert result.returncode != 0
    assert "diffc.images ['download_all'] are neither image files nor scikit-image photographs" in result.stdout + result.stderr
