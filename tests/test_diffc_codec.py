"""DiffC on the tiny model: deterministic round trips, rate points as prefixes, refusing bad files."""

import math

import numpy as np
import pytest
import torch

from sdsqueeze import diffc
from sdsqueeze.diffc import images
from sdsqueeze.models import TinySpec, build_tiny_pipeline

SETTINGS = diffc.DiffcSettings(step_stride=200, max_chunk_bits=8, margin_bits=2, denoise_steps=10, seed=3)
RATE_POINTS = [600, 400, 200]


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)  # tiny ops: threads only add contention
    return build_tiny_pipeline(TinySpec(image_size=64))


@pytest.fixture(scope="module")
def image():
    return images.load_image("astronaut", 64)


@pytest.fixture(scope="module")
def encoded(pipe, image):
    return diffc.encode_rate_points(image, pipe, RATE_POINTS, SETTINGS)


def test_encode_is_deterministic_and_decode_reproduces_pixels(pipe, image, encoded):
    files, _ = encoded
    assert diffc.encode(image, pipe, 400, SETTINGS) == files[400]
    first, second = diffc.decode(files[400], pipe), diffc.decode(files[400], pipe)
    assert first.shape == image.shape and first.dtype == np.uint8
    assert np.array_equal(first, second)


def test_receiver_reaches_the_senders_latent(pipe, image, encoded):
    """The receiver's x_t at the recon timestep is bit-identical to the sender's trajectory."""
    files, report = encoded
    model = diffc.DiffusionModel(pipe)
    sender = diffc.codec.ddim_denoise(model, report.latents[200], 200, SETTINGS.denoise_steps)
    assert torch.equal(diffc.decode_latent(files[200], pipe, model), sender)


def test_rate_grows_and_latent_error_falls_with_lower_recon_timestep(pipe, image, encoded):
    files, report = encoded
    sizes = [len(files[t]) for t in RATE_POINTS]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    model = diffc.DiffusionModel(pipe)
    x0 = model.image_to_latent(image)
    errors = [float(((diffc.decode_latent(files[t], pipe, model) - x0) ** 2).mean()) for t in RATE_POINTS]
    assert errors == sorted(errors, reverse=True)
    # the range coder's payload is the ideal code length of the indices, give or take its flush
    payload = diffc.DiffcFile.from_bytes(files[200]).payload
    assert sum(report.index_bits) - 1 <= 8 * len(payload) <= sum(report.index_bits) + 64
    # and that ideal length stays within the coder's bound per chunk
    assert sum(report.index_bits) <= sum(
        k + c * (math.log2(k / c + 1) + 4) for k, c in zip(report.kl_bits, report.chunks))


def test_receiver_uses_the_senders_thread_count(pipe, encoded):
    """CPU kernels' sums depend on the thread count; the header carries the sender's."""
    files, report = encoded
    assert diffc.DiffcFile.from_bytes(files[200]).cpu_threads == torch.get_num_threads()
    model = diffc.DiffusionModel(pipe)
    sender = diffc.codec.ddim_denoise(model, report.latents[200], 200, SETTINGS.denoise_steps)
    before = torch.get_num_threads()
    torch.set_num_threads(1 if before != 1 else 2)
    try:
        assert torch.equal(diffc.decode_latent(files[200], pipe, model), sender)
    finally:
        torch.set_num_threads(before)


def test_fingerprint_survives_save_and_load_but_not_other_weights(pipe, tmp_path):
    from sdsqueeze.models import load_pipeline

    pipe.save_pretrained(tmp_path / "copy")
    assert diffc.model_fingerprint(load_pipeline(str(tmp_path / "copy"))) == diffc.model_fingerprint(pipe)


def test_wrong_model_is_refused(image, encoded):
    files, _ = encoded
    other = build_tiny_pipeline(TinySpec(image_size=64, seed=1))
    with pytest.raises(diffc.DiffcError, match="wrong model"):
        diffc.decode(files[600], other)


@pytest.mark.parametrize("damage", [lambda d: d[:-1], lambda d: d[: len(d) // 2],
                                    lambda d: d[:-9] + bytes([d[-9] ^ 1]) + d[-8:]])
def test_damaged_file_is_refused(pipe, encoded, damage):
    files, _ = encoded
    with pytest.raises(diffc.DiffcFormatError):
        diffc.decode(damage(files[600]), pipe)


def test_recon_timestep_off_the_grid_is_refused(pipe, image):
    with pytest.raises(diffc.DiffcError, match="multiple of step_stride"):
        diffc.encode(image, pipe, 350, SETTINGS)
