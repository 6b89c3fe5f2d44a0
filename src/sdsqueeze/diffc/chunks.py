"""Splitting one step's KL into chunks the coder can search, each within its own KL budget.

A step whose KL is far above the chunk size would need ~2^KL candidates; DiffC instead splits the
latent's dimensions into random (seeded) subsets and codes them independently. The receiver must
know each chunk's dimensions and candidate count before it decodes its index, so:

* each step's KL is sent in the header, log-quantized to one byte (rounded up, ~9% steps); it gives
  the base chunk count ceil(KL / max_chunk_bits) and the base budget b = KL / chunks;
* a random partition does not share the KL out evenly (a chunk holding more of the mean shift
  carries more), so before each chunk's index the payload carries its *budget class* e: the chunk
  is searched with budget b * 2^(e / 4), the smallest such budget at or above the chunk's own KL.
  Every chunk's KL is therefore within its budget by construction;
* where a chunk would need more than twice ``max_chunk_bits``, the step is split again: a
  per-step *split level* d (also in the payload) doubles the chunk count d times. Only a single
  dimension carrying more than that can stay over its budget; the excess is reported.

Both side values are entropy coded (``side_models``) and counted in the file's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .rcc import ChunkPlan, derive_seed

KL_CODE_STEPS_PER_OCTAVE = 8  # byte q stands for KL = 2^(q/8) - 1 bits: up to ~2^32 bits
# budget class e: b * 2^(e/4), at most ~19% above the chunk's KL. Measured on the embedded default
# (astronaut, coffee): half-octave classes searched ~2.5x more candidates for files as large or larger,
# eighth-octave ones spent more on the classes than they saved on the indices.
BUDGET_CLASSES_PER_OCTAVE = 4


class StepTooLargeError(ValueError):
    """A step's KL cannot be split into chunks the coder can search."""


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
    """What both sides derive from a step's KL byte and its split level."""

    n_chunks: int
    base_bits: float  # b: the budget of budget class 0
    margin_bits: int

    def chunk(self, budget_class: int) -> ChunkPlan:
        return ChunkPlan.for_budget(class_budget(self.base_bits, budget_class), self.margin_bits)


def class_budget(base_bits: float, budget_class: int) -> float:
    return base_bits * 2.0 ** (budget_class / BUDGET_CLASSES_PER_OCTAVE)


def base_chunks(kl_code: int, max_chunk_bits: int) -> int:
    return max(1, math.ceil(dequantize_kl(kl_code) / max_chunk_bits))


def max_split_level(dim: int) -> int:
    return max(0, math.ceil(math.log2(dim)))


def max_budget_class(dim: int) -> int:
    """Enough classes for one chunk to carry the whole step (b * n_chunks, n_chunks <= dim)."""
    return BUDGET_CLASSES_PER_OCTAVE * (max_split_level(dim) + 1)


def plan_step(kl_code: int, dim: int, max_chunk_bits: int, margin_bits: int, split_level: int = 0) -> StepPlan:
    """Chunk count and base budget of a step (its quantized KL over the chunks)."""
    kl = dequantize_kl(kl_code)
    n_chunks = base_chunks(kl_code, max_chunk_bits) * 2 ** split_level
    if n_chunks > dim:
        raise StepTooLargeError(
            f"a step's KL of {kl:.0f} bits needs {n_chunks} chunks of <= {max_chunk_bits} bits but the "
            f"latent has only {dim} dimensions; code more, smaller steps (lower diffc.step_stride) "
            "or raise diffc.max_chunk_bits")
    return StepPlan(n_chunks, kl / n_chunks, margin_bits)


def budget_class(chunk_kl_bits: float, base_bits: float) -> int:
    """The smallest class whose budget is at least the chunk's KL."""
    if chunk_kl_bits <= base_bits:
        return 0
    if base_bits <= 0:  # the step's KL rounds to zero: no class can hold it (reported as excess)
        return 0
    return math.ceil(BUDGET_CLASSES_PER_OCTAVE * math.log2(chunk_kl_bits / base_bits) - 1e-9)


@dataclass(frozen=True)
class StepChunks:
    """The sender's choice for one step: plan, split level, partition and every chunk's class."""

    plan: StepPlan
    split_level: int
    parts: list
    classes: list[int]
    chunk_kl_bits: list[float]

    def excess_bits(self) -> float:
        """Worst chunk KL minus its budget (<= 0: every chunk within budget)."""
        return max(k - class_budget(self.plan.base_bits, e) for k, e in zip(self.chunk_kl_bits, self.classes))


def widest_budget(max_chunk_bits: int) -> float:
    """No chunk is searched with more than twice ``max_chunk_bits`` (bounds search time and memory)."""
    return 2.0 * max_chunk_bits


def choose_chunks(shift, kl_code: int, max_chunk_bits: int, margin_bits: int, seed: int, step: int) -> StepChunks:
    """Split the step until every chunk's KL fits a budget class of at most ``widest_budget``.

    A single dimension carrying more than that cannot be split: its chunk gets the widest class and
    the excess is reported (``StepChunks.excess_bits`` > 0) rather than refused.
    """
    dim = shift.numel()
    contribution = (shift.double() ** 2 / 2 / math.log(2)).cpu()  # each dimension's share of the KL
    cap = widest_budget(max_chunk_bits)
    splittable = float(contribution.max()) <= cap  # else no split can bring the widest chunk under cap
    split_level = 0
    while True:
        plan = plan_step(kl_code, dim, max_chunk_bits, margin_bits, split_level)
        parts = partition(dim, plan.n_chunks, seed, step)
        chunk_kl = [float(contribution[p].sum()) for p in parts]
        if max(chunk_kl) <= cap or not splittable or plan.n_chunks * 2 > dim:
            break
        split_level += 1
    top_class = max(0, math.floor(BUDGET_CLASSES_PER_OCTAVE * math.log2(cap / plan.base_bits) + 1e-9)) \
        if plan.base_bits > 0 else 0
    classes = [min(budget_class(k, plan.base_bits), top_class) for k in chunk_kl]
    return StepChunks(plan, split_level, parts, classes, chunk_kl)


def partition(dim: int, n_chunks: int, seed: int, step: int):
    """A seeded random partition of the latent's dimensions into near-equal chunks."""
    import torch

    generator = torch.Generator("cpu").manual_seed(derive_seed(seed, "partition", step))
    order = torch.randperm(dim, generator=generator)
    return list(torch.tensor_split(order, n_chunks))


def _geometric_weights(head: list[float], size: int) -> np.ndarray:
    """Probabilities ``head`` for the first values, then halving; normalised over ``size`` values."""
    weights = [head[i] if i < len(head) else head[-1] * 0.5 ** (i - len(head) + 1) for i in range(size)]
    return np.asarray(weights) / sum(weights)


def split_weights(dim: int) -> np.ndarray:
    return _geometric_weights([60 / 64, 2 / 64], max_split_level(dim) + 1)


def class_weights(dim: int) -> np.ndarray:
    """A chunk of m dimensions has KL spread like a chi-square with m degrees of freedom around b:
    about half the chunks need class 0, the rest mostly the next few (fixed prior, not sent)."""
    return _geometric_weights([0.5, 0.2, 0.12, 0.08], max_budget_class(dim) + 1)


def side_models(dim: int):
    """constriction models of the split level and of the budget class."""
    import constriction

    return (constriction.stream.model.Categorical(split_weights(dim), perfect=False),
            constriction.stream.model.Categorical(class_weights(dim), perfect=False))


def side_bits(chosen: StepChunks, dim: int) -> float:
    """Ideal code length of a step's side information (split level and budget classes)."""
    return float(-np.log2(split_weights(dim)[chosen.split_level])
                 - np.log2(class_weights(dim)[chosen.classes]).sum())
