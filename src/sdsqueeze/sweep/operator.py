"""Latent compression operators, applied from diffusers' ``callback_on_step_end``.

Each operator maps one latent (C, H, W) to (reconstructed latent, integer codes, side bits):
the codes are what a sender would entropy-code, the side bits what it must send besides them
(e.g. a quantizer's range) so that ``bits`` can measure a real rate for every grid point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OPERATORS = ("ci-round", "uniform")
FLOAT32_BITS = 32


@dataclass(frozen=True)
class Compressed:
    latent: torch.Tensor  # same shape and dtype as the input
    codes: torch.Tensor  # int64, same shape
    side_bits: int  # what the decoder needs besides the codes


def ci_scale(ratio: float) -> float:
    """Compression-Inference's scale: round(1 / ratio, 2). Ratio 1.0 -> scale 1 (integers): the coarsest."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return round(1.0 / ratio, 2)


def ci_round(latent: torch.Tensor, ratio: float) -> Compressed:
    """Compression-Inference's operator exactly: latents = round(latents * scale) / scale, in the latent's dtype.

    The scale is a grid constant known to the decoder, so no side bits.
    """
    scale = ci_scale(ratio)
    codes = torch.round(latent * scale)
    return Compressed(codes / scale, codes.to(torch.int64), 0)


def uniform(latent: torch.Tensor, bits: int, per_channel: bool) -> Compressed:
    """Uniform b-bit quantization over the latent's [min, max] range, per tensor or per channel.

    The ranges (two float32 per range) are the side information.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    x = latent.float()
    dims = tuple(range(1, x.dim())) if per_channel else tuple(range(x.dim()))
    low = x.amin(dim=dims, keepdim=True)
    high = x.amax(dim=dims, keepdim=True)
    levels = 2**bits - 1
    # A constant range (all values equal) has no spread to quantize: any positive step decodes it.
    step = torch.where(high > low, (high - low) / levels, torch.ones_like(high))
    codes = torch.round((x - low) / step).clamp_(0, levels)
    restored = (low + codes * step).to(latent.dtype)
    n_ranges = x.shape[0] if per_channel else 1
    return Compressed(restored, codes.to(torch.int64), 2 * FLOAT32_BITS * n_ranges)


@dataclass(frozen=True)
class Operator:
    """An operator with its grid axis: ``levels`` are ratios (ci-round) or bit depths (uniform)."""

    name: str
    per_channel: bool = True

    @property
    def level_name(self) -> str:
        return "ratio" if self.name == "ci-round" else "bits"

    def __call__(self, latent: torch.Tensor, level) -> Compressed:
        if self.name == "ci-round":
            return ci_round(latent, float(level))
        return uniform(latent, int(level), self.per_channel)

    def label(self, level) -> str:
        """How a level is written in file names: ratio0.75 (as in Compression-Inference), bits4."""
        value = repr(float(level)) if self.name == "ci-round" else str(int(level))
        return f"{self.level_name}{value}"


def make_operator(name: str, range_kind: str = "channel") -> Operator:
    if name not in OPERATORS:
        raise ValueError(f"unknown sweep operator '{name}'; allowed: {', '.join(OPERATORS)}")
    if range_kind not in ("tensor", "channel"):
        raise ValueError(f"uniform range must be 'tensor' or 'channel', got '{range_kind}'")
    return Operator(name, per_channel=range_kind == "channel")
