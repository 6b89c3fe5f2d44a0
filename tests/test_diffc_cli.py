"""The compress/decompress command line on a saved tiny model; a damaged file exits with a message."""

import numpy as np
import torch
from PIL import Image

from sdsqueeze.diffc.__main__ import main
from sdsqueeze.models import TinySpec, save_tiny_pipeline


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

    (tmp_path / "bits" / "noise.diffc").write_bytes(data[:-3])
    assert main(["decompress", "--model", str(model), "--input_dir", str(tmp_path / "bits"),
                 "--output_dir", str(tmp_path / "out2")]) == 1
    assert "truncated" in capsys.readouterr().err
