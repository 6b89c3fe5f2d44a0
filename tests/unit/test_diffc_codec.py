"""DiffC on the tiny model: deterministic round trips, rate points as prefixes, refusing bad files."""

import contextlib
import copy
import dataclasses
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
    # the range coder's payload is the ideal code length of the indices and the side information
    # (split levels, budget classes), give or take its flush and the models' probability rounding
    payload = diffc.DiffcFile.from_bytes(files[200]).payload
    ideal = sum(report.index_bits) + sum(report.side_bits)
    assert ideal - 1 <= 8 * len(payload) <= ideal + 64
    # and the indices' ideal length stays within the coder's bound per chunk
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

    copy.deepcopy(pipe).save_pretrained(tmp_path / "copy")  # saving touches the saved pipeline's configs
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


@contextlib.contextmanager
def other_process_state():
    """What other work in the same process may leave behind: reduced float32 matmul precision
    (oneDNN then uses bf16 on CPUs with AMX or AVX-512-BF16), another thread count, deterministic
    algorithms off; restored after. (oneDNN stays on: turning it off would hide the bf16 path.)"""
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.randn(256, 256) @ torch.randn(256, 256)  # other torch work first
    try:
        torch.set_float32_matmul_precision("medium")
        torch.set_num_threads(2 if threads == 1 else 1)
        torch.use_deterministic_algorithms(False)
        torch.nn.functional.conv2d(torch.randn(1, 8, 32, 32), torch.randn(8, 8, 3, 3))
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def test_decoding_does_not_depend_on_what_the_process_did_before(pipe, encoded):
    """The sender's and receiver's numerics are pinned (threads, float32 precision, kernels), so a
    receiver in another process state reaches the sender's latent bit for bit (the stored digest is
    checked too: a mismatch would raise)."""
    files, report = encoded
    model = diffc.DiffusionModel(pipe)
    expected = diffc.decode_latent(files[200], pipe, model)
    with other_process_state():
        assert torch.equal(diffc.decode_latent(files[200], pipe, model), expected)
    with diffc.codec.numeric_regime(torch.get_num_threads()):
        sender = diffc.codec.ddim_denoise(model, report.latents[200], 200, SETTINGS.denoise_steps)
    assert torch.equal(sender, expected)


def test_files_encoded_in_another_process_state_are_the_same_bytes(pipe, image, encoded):
    """Given the same thread count (the file records it), the encoder's bytes ignore the process state."""
    files, _ = encoded
    same_threads = dataclasses.replace(SETTINGS, cpu_threads=torch.get_num_threads())
    with other_process_state():
        again, _ = diffc.encode_rate_points(image, pipe, RATE_POINTS, same_threads)
    assert again == files


def _with(data: bytes, **fields) -> bytes:
    return dataclasses.replace(diffc.DiffcFile.from_bytes(data), **fields).to_bytes()


def test_a_file_whose_latent_digest_does_not_match_is_refused(pipe, encoded, tmp_path):
    from sdsqueeze.diffc import runs

    files, _ = encoded
    wrong = _with(files[400], latent_digest=bytes(4))
    with pytest.raises(diffc.DiffcError, match="does not match the sender"):
        diffc.decode(wrong, pipe)
    path = tmp_path / "astronaut" / "t0400.diffc"
    with pytest.raises(diffc.DiffcError) as err:
        runs.decode_file(path, wrong, pipe, diffc.DiffusionModel(pipe))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_self_check_refuses_bytes_that_decode_elsewhere(pipe, image, monkeypatch):
    real, calls = diffc.codec.ddim_denoise, []

    def sender_off_by_a_little(model, x_t, t, steps):  # the sender's first DDIM (its digest) drifts
        calls.append(t)
        return real(model, x_t, t, steps) + (1e-4 if len(calls) == 1 else 0.0)

    monkeypatch.setattr(diffc.codec, "ddim_denoise", sender_off_by_a_little)
    settings = dataclasses.replace(SETTINGS, self_check=True)
    with pytest.raises(diffc.DiffcError, match="does not match the sender"):
        diffc.encode(image, pipe, 600, settings)
    calls.clear()
    assert diffc.encode(image, pipe, 600, dataclasses.replace(settings, self_check=False))


@pytest.mark.parametrize("fields, message", [
    ({"latent_shape": (4, 512, 512)}, "does not fit the model"),
    ({"latent_shape": (3, 8, 8)}, "does not fit the model"),
    ({"latent_shape": (4, 1000, 1000)}, "does not fit the model"),
    ({"kl_codes": [255, 255, 255]}, "more chunks"),
    ({"recon_timestep": 999}, "grid"),
    ({"cpu_threads": 0}, "threads"),
])
def test_header_fields_are_bounded_against_the_model(pipe, encoded, fields, message):
    files, _ = encoded
    with pytest.raises(diffc.DiffcFormatError, match=message):
        diffc.decode_latent(_with(files[400], **fields), pipe)
