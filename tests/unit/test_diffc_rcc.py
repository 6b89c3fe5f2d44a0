"""The reverse-channel coder: sample distribution, code length, entropy coding, chunking, format."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats

from sdsqueeze.diffc import rcc
from sdsqueeze.diffc.bitstream import DiffcFile, DiffcFormatError
from sdsqueeze.diffc.chunks import (
    StepTooLargeError,
    choose_chunks,
    dequantize_kl,
    partition,
    plan_step,
    quantize_kl,
)


def shift_for_kl(kl_bits: float, dim: int, seed: int = 0) -> torch.Tensor:
    """A mean shift in a random direction whose KL(N(mu, I) || N(0, I)) is ``kl_bits``."""
    direction = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return direction / direction.norm() * math.sqrt(2 * math.log(2) * kl_bits)


def transmit(mu: torch.Tensor, draws: int, kl_bits: float, margin_bits: float, first_seed: int = 0,
             block_rows: int = 4096):
    plan = rcc.ChunkPlan.for_budget(kl_bits, margin_bits)
    seeds = [rcc.derive_seed("test", first_seed + i) for i in range(draws)]
    indices, values = rcc.select_many([mu] * draws, seeds, plan.n_candidates, block_rows)
    return plan, seeds, indices, torch.stack(values)


def test_transmitted_sample_follows_q_in_1d():
    """KS test against Q = N(mu, 1), KL = 3 bits, 2^11 candidates, 3000 draws, fixed seeds.

    Tolerance: the KS p-value must exceed 0.01. A sender that ignored Q (sent candidate 0, i.e. a
    draw from P) fails this by hundreds of orders of magnitude, so the test has power.
    """
    mu = shift_for_kl(3.0, 1)
    _, _, _, samples = transmit(mu, 3000, 3.0, margin_bits=8)
    x = samples[:, 0].numpy()
    assert stats.kstest(x, "norm", args=(float(mu[0]), 1.0)).pvalue > 0.01
    assert stats.kstest(x, "norm", args=(0.0, 1.0)).pvalue < 1e-10  # not P


def test_transmitted_sample_moments_in_2d():
    """Mean within 4 standard errors of mu, per-axis variance within 10% of 1 (2000 draws)."""
    mu = shift_for_kl(4.0, 2, seed=3)
    _, _, _, samples = transmit(mu, 2000, 4.0, margin_bits=8, first_seed=10_000)
    standard_error = 1 / math.sqrt(len(samples))
    assert torch.all((samples.mean(0) - mu).abs() < 4 * standard_error)
    assert torch.all((samples.var(0) - 1).abs() < 0.1)


@pytest.mark.parametrize("kl_bits", [0.5, 2.0, 6.0, 10.0])
def test_mean_code_length_within_bound(kl_bits):
    """Mean ideal code length <= KL + log2(KL + 1) + 4 bits per chunk, and the real constriction
    stream of all the draws is within 64 bits of the sum of the ideal lengths."""
    import constriction

    mu = shift_for_kl(kl_bits, 16, seed=1)
    draws = 300 if kl_bits < 10 else 120
    plan, _, indices, _ = transmit(mu, draws, kl_bits, margin_bits=3)
    lengths = [rcc.index_code_length(i, plan) for i in indices]
    assert np.mean(lengths) <= kl_bits + math.log2(kl_bits + 1) + 4
    encoder = constriction.stream.queue.RangeEncoder()
    for index in indices:
        rcc.encode_index(encoder, index, plan)
    assert encoder.num_bits() <= sum(lengths) + 64
    decoder = constriction.stream.queue.RangeDecoder(encoder.get_compressed())
    assert [rcc.decode_index(decoder, plan) for _ in indices] == indices


def test_receiver_regenerates_the_selected_candidate():
    mu = shift_for_kl(9.0, 40, seed=2)
    plan, seeds, indices, values = transmit(mu, 8, 9.0, margin_bits=3, block_rows=256)
    assert max(indices) >= 256  # some winners sit beyond the first block of candidates
    for seed, index, value in zip(seeds, indices, values):
        again = rcc.candidate(seed, index, plan.n_candidates, 40, 256)
        assert torch.equal(again, value)


def test_entropy_coding_round_trip_including_large_exponents():
    import constriction

    plan = rcc.ChunkPlan.for_budget(18.0, 4)  # 22-bit indices: mantissa split into pieces
    indices = [0, 1, 2, 3, 1000, plan.n_candidates - 1, 2**20 + 12345]
    encoder = constriction.stream.queue.RangeEncoder()
    for index in indices:
        rcc.encode_index(encoder, index, plan)
    decoder = constriction.stream.queue.RangeDecoder(encoder.get_compressed())
    assert [rcc.decode_index(decoder, plan) for _ in indices] == indices
    with pytest.raises(ValueError):
        rcc.encode_index(encoder, plan.n_candidates, plan)


def test_kl_quantization_never_undercounts_and_fits_a_byte():
    for kl in [0.0, 0.3, 1.0, 7.9, 123.4, 5000.0, 1e6]:
        code = quantize_kl(kl)
        assert 0 <= code <= 255
        assert dequantize_kl(code) >= kl - 1e-9
        assert dequantize_kl(code) <= (kl + 1) * 2 ** (1 / 8)  # at most one ~9% step above


def test_step_plan_and_partition():
    plan = plan_step(quantize_kl(100.0), 1024, max_chunk_bits=12, margin_bits=3)
    assert plan.n_chunks == math.ceil(dequantize_kl(quantize_kl(100.0)) / 12)
    assert plan.chunk(0).kl_bits <= 12 and plan.chunk(4).kl_bits == 2 * plan.chunk(0).kl_bits
    parts = partition(1024, plan.n_chunks, seed=5, step=2)
    assert sorted(torch.cat(parts).tolist()) == list(range(1024))
    assert [p.tolist() for p in parts] == [p.tolist() for p in partition(1024, plan.n_chunks, 5, 2)]
    with pytest.raises(StepTooLargeError, match="chunks"):
        plan_step(quantize_kl(5000.0), 64, max_chunk_bits=8, margin_bits=3)


def test_every_chunk_is_within_its_budget_even_when_the_shift_is_concentrated():
    """A shift whose KL sits in few dimensions: an equal split would leave chunks far over KL/n
    (the old coder's fault); budget classes and split levels keep every chunk within budget."""
    shift = torch.randn(1024, generator=torch.Generator().manual_seed(0)) * 0.3
    shift[:40] *= 6  # 40 dimensions carry most of the KL
    code = quantize_kl(rcc.kl_bits(shift))
    chosen = choose_chunks(shift, code, max_chunk_bits=10, margin_bits=3, seed=1, step=0)
    assert chosen.excess_bits() <= 0
    assert max(chosen.chunk_kl_bits) > 1.5 * chosen.plan.base_bits  # the case that needs the classes
    budgets = [chosen.plan.chunk(e).kl_bits for e in chosen.classes]
    assert all(k <= b <= 2 * 10 for k, b in zip(chosen.chunk_kl_bits, budgets))
    assert abs(sum(chosen.chunk_kl_bits) - rcc.kl_bits(shift)) < 1e-6


def _example_file() -> DiffcFile:
    return DiffcFile(fingerprint=bytes(range(8)), dtype="float32", device_kind="cpu",
                     latent_shape=(4, 16, 16), seed=7, step_stride=50, recon_timestep=300,
                     denoise_steps=20, max_chunk_bits=12, margin_bits=3, block_rows_log2=12, cpu_threads=2,
                     regime=1, kl_codes=[0, 80, 79], latent_digest=bytes(range(8, 12)), payload=bytes(range(40)))


def test_bitstream_round_trip():
    data = _example_file().to_bytes()
    assert DiffcFile.from_bytes(data) == _example_file()


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-7], "truncated"),
    (lambda d: d[:10], "truncated"),
    (lambda d: d[:30] + bytes([d[30] ^ 0x10]) + d[31:], "checksum"),
    (lambda d: b"PNG" + d[3:], "not a .diffc"),
    (lambda d: d[:3] + bytes([9]) + d[4:], "version"),
    (lambda d: d + b"\0", "checksum"),
])
def test_bitstream_rejects_damaged_files(damage, message):
    with pytest.raises(DiffcFormatError, match=message):
        DiffcFile.from_bytes(damage(_example_file().to_bytes()))


@pytest.mark.parametrize("field, value", [
    ("latent_shape", (4, 3000, 3000)), ("latent_shape", (4, 0, 16)), ("denoise_steps", 10**12),
    ("block_rows_log2", 40), ("cpu_threads", 10**6), ("max_chunk_bits", 99), ("regime", 7)])
def test_crafted_headers_with_a_valid_checksum_are_refused(field, value):
    crafted = dataclasses.replace(_example_file(), **{field: value}).to_bytes()
    with pytest.raises(DiffcFormatError, match="outside|is 0"):
        DiffcFile.from_bytes(crafted)
