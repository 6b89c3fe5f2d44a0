"""Reverse-channel coding of one Gaussian mean shift: ordered random coding over seeded candidates.

Every DiffC step sends a sample of Q = N(m_Q, s^2 I) to a receiver that knows P = N(m_P, s^2 I).
In whitened coordinates z = (x - m_P) / s this is P = N(0, I) and Q = N(mu, I), and the
importance weight is log dQ/dP(z) = z.mu - |mu|^2 / 2, so scoring a candidate is one dot product.

The coder is the Poisson functional representation (Li & El Gamal 2018) truncated to the first K
points of the Poisson process, i.e. ordered random coding (Theis & Yosri 2022): candidates
z_1..z_K ~ P from a PRNG both sides seed alike, arrival times T_1 < T_2 < ... (cumulative Exp(1)),
and the sender picks N = argmin_i log T_i - log w(z_i). Untruncated, z_N ~ Q exactly; with
K ~ 2^(KL + margin) the bias is small (tested in tests/unit/test_diffc_rcc.py). The index is entropy
coded under Zipf's law p(n) ~ (n+1)^-(1 + 1/lambda), lambda = KL + log2(e)/e + 1 (the bound on
E[log2 N] of Li & El Gamal), which keeps the mean code length within KL + log2(KL + 1) + 4 bits.

No library implements PFR/ORC or a seekable candidate stream, so both are written here; the
normal draws themselves are torch's (one generator per block of candidates, so the receiver
regenerates only the block holding the index), the entropy coder is constriction's.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ZIPF_OFFSET_BITS = math.log2(math.e) / math.e + 1.0  # E[log2 N] <= KL + this (Li & El Gamal)
MANTISSA_PIECE_BITS = 16  # constriction's Uniform takes alphabets below 2^24; 16-bit pieces are safe
PROBABILITY_SCALE = 2**24  # exponent probabilities rounded to integers: robust to last-bit float differences


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any labels (file seed, step, chunk, block): stable across runs and machines."""
    digest = hashlib.sha256(("diffc:" + ":".join(map(str, parts))).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class ChunkPlan:
    """What both sides know about one chunk before its index is sent."""

    kl_bits: float  # the KL budget of the chunk (from the step's transmitted KL)
    max_exponent: int  # indices n satisfy n + 1 < 2^(max_exponent + 1)

    @property
    def n_candidates(self) -> int:
        return 2 ** (self.max_exponent + 1) - 1

    @classmethod
    def for_budget(cls, kl_bits: float, margin_bits: float) -> ChunkPlan:
        """Search about 2^(KL + margin) candidates: the margin buys accuracy of the sample."""
        return cls(float(kl_bits), max(0, math.ceil(kl_bits + margin_bits) - 1))


def candidate_block(seed: int, block: int, rows: int, dim: int, device: str = "cpu"):
    """Rows block*rows ... block*rows + rows - 1 of the candidate list (float32, standard normal)."""
    import torch

    generator = torch.Generator(device).manual_seed(derive_seed(seed, "block", block))
    return torch.randn(rows, dim, generator=generator, device=device, dtype=torch.float32)


def block_rows(n_candidates: int, max_block_rows: int) -> int:
    return min(n_candidates, max_block_rows)


def candidate(seed: int, index: int, n_candidates: int, dim: int, max_block_rows: int,
              device: str = "cpu"):
    """The receiver's side: regenerate candidate ``index`` (only its block is drawn)."""
    rows = block_rows(n_candidates, max_block_rows)
    return candidate_block(seed, index // rows, rows, dim, device)[index % rows]


def log_arrival_times(seed: int, n: int) -> np.ndarray:
    """log T_1..T_n of a unit-rate Poisson process: the sender's private ordering (never sent).

    Drawn with numpy: only the sender needs them, and small single-threaded draws are cheap.
    """
    gaps = np.random.default_rng(derive_seed(seed, "arrivals")).standard_exponential(n)
    return np.log(np.cumsum(gaps))


def select(mu, seed: int, n_candidates: int, max_block_rows: int) -> tuple[int, object]:
    """The sender's side for one chunk: index and value of the candidate ORC picks for N(mu, I)."""
    indices, values = select_many([mu], [seed], n_candidates, max_block_rows)
    return indices[0], values[0]


def select_many(mus: list, seeds: list[int], n_candidates: int,
                max_block_rows: int) -> tuple[list[int], list]:
    """ORC for several chunks of one step at once (same candidate count, dims may differ).

    ``mus`` are whitened mean shifts (1-D float32 tensors on the device candidates are drawn on).
    Candidates are drawn block by block per chunk (each block its own seeded generator, so the
    receiver can draw just one), zero-padded to a common width and scored for all chunks with one
    batched matrix-vector product; log T_i - z_i.mu (the constant |mu|^2/2 dropped) is minimised.
    """
    import torch

    device = mus[0].device
    width = max(m.numel() for m in mus)
    shifts = torch.zeros(len(mus), width, device=device)
    for c, m in enumerate(mus):
        shifts[c, : m.numel()] = m.float()
    log_t = torch.from_numpy(np.stack([log_arrival_times(s, n_candidates) for s in seeds])).to(device)
    rows = block_rows(n_candidates, max_block_rows)
    best_score = torch.full((len(mus),), math.inf, dtype=torch.float64, device=device)
    best_index = torch.zeros(len(mus), dtype=torch.long, device=device)
    for block in range(math.ceil(n_candidates / rows)):
        start, stop = block * rows, min((block + 1) * rows, n_candidates)
        z = torch.zeros(len(mus), stop - start, width, device=device)
        for c, (m, s) in enumerate(zip(mus, seeds)):
            z[c, :, : m.numel()] = candidate_block(s, block, rows, m.numel(), str(device))[: stop - start]
        score = log_t[:, start:stop] - torch.bmm(z, shifts.unsqueeze(2)).squeeze(2).double()
        block_best, block_arg = score.min(dim=1)
        better = block_best < best_score
        best_score = torch.where(better, block_best, best_score)
        best_index = torch.where(better, block_arg + start, best_index)
    indices = [int(i) for i in best_index.cpu()]
    values = [candidate(s, i, n_candidates, m.numel(), max_block_rows, str(device))
              for s, i, m in zip(seeds, indices, mus)]
    return indices, values


@lru_cache(maxsize=4096)
def exponent_weights(kl_bits: float, max_exponent: int) -> np.ndarray:
    """Integer weights of e = floor(log2(n + 1)) under the Zipf prior on n (Hurwitz zeta sums)."""
    from scipy.special import zeta

    lam = max(kl_bits, 0.0) + ZIPF_OFFSET_BITS
    s = 1.0 + 1.0 / lam
    edges = 2.0 ** np.arange(max_exponent + 2)
    mass = zeta(s, edges[:-1]) - zeta(s, edges[1:])
    mass = np.maximum(mass / mass.sum(), 0.0)
    return np.maximum(np.round(mass * PROBABILITY_SCALE), 1.0)


def exponent_model(plan: ChunkPlan):
    import constriction

    return constriction.stream.model.Categorical(
        exponent_weights(round(plan.kl_bits, 6), plan.max_exponent), perfect=False)


def _mantissa_pieces(exponent: int) -> list[int]:
    pieces, left = [], exponent
    while left > 0:
        pieces.append(min(left, MANTISSA_PIECE_BITS))
        left -= pieces[-1]
    return pieces


def encode_index(encoder, index: int, plan: ChunkPlan) -> None:
    """Push one index: its octave under the Zipf prior, then the offset inside it, uniformly."""
    import constriction

    if not 0 <= index < plan.n_candidates:
        raise ValueError(f"index {index} outside [0, {plan.n_candidates})")
    exponent = (index + 1).bit_length() - 1
    encoder.encode(exponent, exponent_model(plan))
    mantissa = index + 1 - (1 << exponent)
    for bits in _mantissa_pieces(exponent):
        encoder.encode(mantissa & ((1 << bits) - 1), constriction.stream.model.Uniform(1 << bits))
        mantissa >>= bits


def decode_index(decoder, plan: ChunkPlan) -> int:
    import constriction

    exponent = int(decoder.decode(exponent_model(plan)))
    mantissa, shift = 0, 0
    for bits in _mantissa_pieces(exponent):
        mantissa |= int(decoder.decode(constriction.stream.model.Uniform(1 << bits))) << shift
        shift += bits
    return (1 << exponent) + mantissa - 1


def index_code_length(index: int, plan: ChunkPlan) -> float:
    """Ideal code length of an index in bits (what the entropy coder approaches)."""
    weights = exponent_weights(round(plan.kl_bits, 6), plan.max_exponent)
    exponent = (index + 1).bit_length() - 1
    return float(exponent - np.log2(weights[exponent] / weights.sum()))


def kl_bits(mu) -> float:
    """KL(N(mu, I) || N(0, I)) in bits."""
    return float((mu.double() ** 2).sum() / 2 / math.log(2))
