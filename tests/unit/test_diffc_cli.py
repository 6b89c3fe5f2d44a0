"""The compress/decompress command line on a saved tiny model; a damaged file exits with a message."""

import dataclasses
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdsqueeze.diffc.__main__ import main
from sdsqueeze.diffc.bitstream import DiffcFile
from sdsqueeze.models import TinySpec, save_tiny_pipeline

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_compress_decompress_round_trip_and_damaged_file(tmp_path, capsys):
    torch.set_num_threads(1)
    model = save_tiny_pipeline(tmp_path / "model", TinySpec(image_size=64))
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(
        tmp_path / "in" / "noise.png")
    common = ["--model", str(model), "--step_stride", "250", "--denoise_steps", "4", "--max_chunk_bits", "8"]
    assert main(["compress", *common, "--image_dir", str(tmp_path / "in"),
                 "--output_dir", str(tmp_path / "bits"), "--recon_timestep", "500"]) == 0
    data = (tmp_path / "bits" / "noise.diffc").read_bytes()
    assert f"{len(data)} bytes" in capsys.readouterr().out
    assert main(["decompress", "--model", str(model), "--input_dir", str(tmp_path / "bits"),
                 "--output_dir", str(tmp_path / "out")]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "noise.png")).shape == (64, 64, 3)

    capsys.readouterr()  # only the damaged file's messages below
    (tmp_path / "bits" / "noise.diffc").write_bytes(data[:-3])
    assert main(["decompress", "--model", str(model), "--input_dir", str(tmp_path / "bits"),
                 "--output_dir", str(tmp_path / "out2")]) == 1
    err = capsys.readouterr().err  # a damaged file: one line that names it
    assert "truncated" in err and str(tmp_path / "bits" / "noise.diffc") in err and err.count("\n") == 1


CRAFTED = {"huge latent shape": {"latent_shape": (4, 3000, 3000)},
           "huge block rows": {"block_rows_log2": 40},
           "huge denoise steps": {"denoise_steps": 10**12},
           "within format limits but beyond the memory bound": {"latent_shape": (4, 1000, 1000)}}
# The CLI, then its peak resident memory (VmHWM, in kB: this process's own, unlike ru_maxrss,
# which Linux carries over from the forking parent across exec).
PEAK_RSS = ("import re, sys; from sdsqueeze.diffc.__main__ import main; rc = main(sys.argv[1:]); "
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); sys.exit(rc)")


@pytest.mark.parametrize("fields", CRAFTED.values(), ids=CRAFTED.keys())
def test_crafted_header_is_refused_fast_in_one_line_naming_the_file(tmp_path, fields):
    """~100-byte files with a valid checksum that declare a decode of many GB: refused from the
    header alone, before the model loads or anything is allocated."""
    (tmp_path / "in").mkdir()
    header = DiffcFile(fingerprint=bytes(8), dtype="float32", device_kind="cpu", latent_shape=(4, 16, 16),
                       seed=1, step_stride=100, recon_timestep=500, denoise_steps=10, max_chunk_bits=10,
                       margin_bits=3, block_rows_log2=12, cpu_threads=1, kl_codes=[0] * 5, payload=bytes(8))
    path = tmp_path / "in" / "crafted.diffc"
    path.write_bytes(dataclasses.replace(header, **fields).to_bytes())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, "decompress", "--model", str(tmp_path / "no-model"),
                             "--input_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out")],
                            check=False, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds, not wall time: the shared test machine's load must not decide the outcome
    cpu_seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr, result.stderr
    assert cpu_seconds < 2.0
    assert int(result.stdout.split()[-1]) * 1024 < 500e6
