"""GroupNorm for channels-last activations, written as reductions along the contiguous channel axis.

Why by hand: Inductor lowers ``nn.GroupNorm`` to one reduction per (sample, group) over H*W pixels x
C/G channels. In channels_last memory a group's C/G channels are a short run (10 values of 320 in SD's
first block) every C values, so each reduction reads scattered short runs with one program per
(sample, group): 256 programs at batch 8. On an H200 those kernels ran several times slower than
the bytes they move allow. Here the statistics come in two coalesced steps (per channel over chunks of
pixels with Welford's ``var_mean``, then per group over chunks and channels by the law of total
variance), and the normalisation is a pointwise step that Inductor fuses with its producer (a residual
add) and its consumer (SiLU, the 8-bit quantisation). Same arithmetic in float32, a different
summation order: outputs match ``nn.GroupNorm`` to float32 rounding.

On CUDA the first step is a Triton kernel (``sdsqueeze::chunk_moments``, a ``triton_op``, so
torch.compile and CUDA graphs keep it in the graph): each program reads a tile of 64 pixels x 64
channels, 128 contiguous bytes per pixel. Left to Inductor, the same reduction was tiled with few
channels per program and ran at a fraction of the copy rate. Elsewhere ``torch.var_mean`` does it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only torch builds: the torch path below serves every device
    triton = None

# Pixels per chunk of the first statistics step: enough rows per reduction for a long coalesced
# read, few enough that the per-chunk statistics stay a small tensor.
CHUNK_ROWS = 64


class ChannelsLastGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` with the same parameters (a module's class is swapped in place, so state dicts
    and weights are untouched); inputs that are not 4-D channels_last take the stock path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        return channels_last_group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def channels_last_group_norm(x: torch.Tensor, groups: int, weight, bias, eps: float) -> torch.Tensor:
    batch, channels, height, width = x.shape
    pixels = height * width
    rows = math.gcd(pixels, CHUNK_ROWS)
    rows_last = x.permute(0, 2, 3, 1)  # [B, H, W, C]: a view of channels_last memory
    chunk_mean, chunk_var = chunk_moments(rows_last.reshape(batch * pixels, channels), rows)  # [chunks, C]
    per_group = (batch, pixels // rows, groups, channels // groups)
    chunk_mean = chunk_mean.reshape(per_group)
    chunk_var = chunk_var.reshape(per_group)
    # Every chunk and channel holds the same number of values, so the group's mean is the mean of
    # the chunk means and its variance the mean of (chunk variance + squared offset of chunk mean).
    mean = chunk_mean.mean(dim=(1, 3), keepdim=True)
    var = (chunk_var + (chunk_mean - mean).square()).mean(dim=(1, 3), keepdim=True)
    scale = torch.rsqrt(var + eps)  # [B, 1, G, 1]
    grouped = rows_last.float().reshape(batch, height, width, groups, channels // groups)
    normed = (grouped - mean.reshape(batch, 1, 1, groups, 1)) * scale.reshape(batch, 1, 1, groups, 1)
    normed = normed.reshape(batch, height, width, channels)
    if weight is not None:
        normed = normed * weight.float() + bias.float()
    return normed.to(x.dtype).permute(0, 3, 1, 2)  # a [B, C, H, W] view, channels_last in memory


def chunk_moments(rows: torch.Tensor, chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, the float32 mean and (biased) variance of each run of ``chunk_rows`` rows of a
    [N, C] tensor: two [N / chunk_rows, C] tensors."""
    if rows.is_cuda and triton is not None:
        return torch.ops.sdsqueeze.chunk_moments(rows.contiguous(), chunk_rows)
    var, mean = torch.var_mean(rows.float().reshape(-1, chunk_rows, rows.shape[1]), dim=1, correction=0)
    return mean, var


if triton is not None:
    BLOCK_CHANNELS = 64  # 128 contiguous bytes of fp16 per pixel: whole cache lines

    @triton.jit
    def _chunk_moments_kernel(rows_ptr, mean_ptr, var_ptr, channels, CHUNK_ROWS: tl.constexpr,
                              BLOCK_CHANNELS: tl.constexpr):
        chunk = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK_CHANNELS + tl.arange(0, BLOCK_CHANNELS)
        row = chunk.to(tl.int64) * CHUNK_ROWS + tl.arange(0, CHUNK_ROWS)
        inside = cols < channels
        values = tl.load(rows_ptr + row[:, None] * channels + cols[None, :], mask=inside[None, :], other=0.0)
        values = values.to(tl.float32)
        mean = tl.sum(values, axis=0) / CHUNK_ROWS
        centred = values - mean[None, :]
        var = tl.sum(centred * centred, axis=0) / CHUNK_ROWS
        tl.store(mean_ptr + chunk * channels + cols, mean, mask=inside)
        tl.store(var_ptr + chunk * channels + cols, var, mask=inside)

    @torch.library.triton_op("sdsqueeze::chunk_moments", mutates_args=())
    def _chunk_moments_op(rows: torch.Tensor, chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        count, channels = rows.shape
        mean = rows.new_empty((count // chunk_rows, channels), dtype=torch.float32)
        var = torch.empty_like(mean)
        grid = (count // chunk_rows, triton.cdiv(channels, BLOCK_CHANNELS))
        torch.library.wrap_triton(_chunk_moments_kernel)[grid](
            rows, mean, var, channels, CHUNK_ROWS=chunk_rows, BLOCK_CHANNELS=BLOCK_CHANNELS)
        return mean, var


def use_channels_last_group_norm(*modules: nn.Module) -> int:
    """Swap every ``nn.GroupNorm`` under ``modules`` for ``ChannelsLastGroupNorm``; returns how many."""
    swapped = 0
    for root in modules:
        for module in root.modules():
            if type(module) is nn.GroupNorm:
                module.__class__ = ChannelsLastGroupNorm
                swapped += 1
    return swapped
