"""Splitting one step's KL into chunks the coder can search, and carrying the KL in one byte.

A step whose KL is far above the chunk size would need ~2^KL candidates; DiffC instead splits the
latent's dimensions into random (seeded) subsets, each carrying at most ``max_chunk_bits``, and
codes them independently. The receiver must know how many chunks there are and how large each
index can be before it decodes anything, so each step's KL is sent, log-quantized to one byte
(rounded up, ~9% steps), and everything else is derived from it on both sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .rcc import ChunkPlan, derive_seed

KL_CODE_STEPS_PER_OCTAVE = 8  # byte q stands for KL = 2^(q/8) - 1 bits: up to ~2^32 bits


class StepTooLargeError(ValueError):
    """A step's KL needs more chunks than the latent has dimensions."""


def quantize_kl(kl_bits: float) -> int:
    """The byte sent for a step: the smallest code whose KL is at least the step's."""
    code = math.ceil(KL_CODE_STEPS_PER_OCTAVE * math.log2(1.0 + max(kl_bits, 0.0)) - 1e-9)
    if code > 255:
        raise StepTooLargeError(f"a step's KL of {kl_bits:.0f} bits is beyond what the format carries")
    return max(code, 0)


def dequantize_kl(code: int) -> float:
    return 2.0 ** (code / KL_CODE_STEPS_PER_OCTAVE) - 1.0


@dataclass(frozen=True)
class StepPlan:
    n_chunks: int
    chunk: ChunkPlan


def plan_step(kl_code: int, dim: int, max_chunk_bits: int, margin_bits: int) -> StepPlan:
    """Chunks of at most ``max_chunk_bits`` (by the step's quantized KL), each with its search size."""
    kl = dequantize_kl(kl_code)
    n_chunks = max(1, math.ceil(kl / max_chunk_bits))
    if n_chunks > dim:
        raise StepTooLargeError(
            f"a step's KL of {kl:.0f} bits needs {n_chunks} chunks of <= {max_chunk_bits} bits but the "
            f"latent has only {dim} dimensions; code more, smaller steps (lower diffc.step_stride) "
            "or raise diffc.max_chunk_bits")
    return StepPlan(n_chunks, ChunkPlan.for_budget(kl / n_chunks, margin_bits))


def partition(dim: int, n_chunks: int, seed: int, step: int):
    """A seeded random partition of the latent's dimensions into near-equal chunks."""
    import torch

    generator = torch.Generator("cpu").manual_seed(derive_seed(seed, "partition", step))
    order = torch.randperm(dim, generator=generator)
    return list(torch.tensor_split(order, n_chunks))
