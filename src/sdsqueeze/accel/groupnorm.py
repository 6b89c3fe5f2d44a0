"""GroupNorm for channels-last activations, written as reductions along the contiguous channel axis.

Why by hand: Inductor lowers ``nn.GroupNorm`` to one reduction per (sample, group) over H*W pixels x
C/G channels. In channels_last memory a group's C/G channels are a short run (10 values of 320 in SD's
first block) every C values, so each reduction reads scattered short runs with one program per
(sample, group): 256 programs at batch 8. On an H200 those kernels ran several times slower than
the bytes they move allow. Here:

1. per channel, moments over chunks of pixels (``chunk_moments``): each program streams whole cache
   lines (64 channels) of one chunk;
2. per group, by the law of total variance over chunks and channels, a float32 scale and shift per
   (sample, channel) (``group_scale_shift``);
3. one multiply-add per value, a pointwise step Inductor fuses with its consumer (SiLU, the 8-bit
   quantisation). With the group's rsqrt and affine parameters recomputed per value instead, that
   kernel ran at half the copy rate, limited by arithmetic.

On CUDA steps 1 and 2 are Triton kernels (``triton_op``s, so torch.compile and CUDA graphs keep them
in the graph); elsewhere torch ops compute the same. Same arithmetic in float32, a different summation
order: outputs match ``nn.GroupNorm`` to float32 rounding.
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

# Pixels per chunk of the first statistics step, a power of two in this range: long streamed reads
# per program, yet enough programs per sample to fill the GPU. The choice depends on the shape only
# (never on the device or the batch), so every machine sums in the same order.
CHUNK_ROWS_RANGE = (64, 512)
PROGRAMS_PER_SAMPLE = 64


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
    rows = chunk_rows_for(pixels, channels)
    rows_last = x.permute(0, 2, 3, 1).reshape(batch * pixels, channels)  # a view of channels_last memory
    chunk_mean, chunk_var = chunk_moments(rows_last, rows)  # [chunks, C]
    weight = torch.ones(channels, device=x.device) if weight is None else weight
    bias = torch.zeros(channels, device=x.device) if bias is None else bias
    scale, shift = group_scale_shift(chunk_mean.reshape(batch, -1, channels), chunk_var.reshape(batch, -1, channels),
                                     groups, weight, bias, eps)
    # One multiply-add per value with a per-(sample, channel) scale and shift, both materialised by
    # the step before: Inductor's pointwise kernel (fused with SiLU or an 8-bit cast) then does
    # little arithmetic per value. Recomputing the group's rsqrt per value made it compute-bound.
    return (x.float() * scale[:, :, None, None] + shift[:, :, None, None]).to(x.dtype)


def chunk_rows_for(pixels: int, channels: int) -> int:
    """The longest chunk (a power of two within CHUNK_ROWS_RANGE dividing ``pixels``) that still
    gives PROGRAMS_PER_SAMPLE programs of 64 channels; ``gcd(pixels, 64)`` for small images."""
    shortest, longest = CHUNK_ROWS_RANGE
    rows = math.gcd(pixels, shortest)
    while (rows * 2 <= longest and pixels % (rows * 2) == 0
           and pixels // (rows * 2) * math.ceil(channels / 64) >= PROGRAMS_PER_SAMPLE):
        rows *= 2
    return rows


def group_scale_shift(chunk_mean: torch.Tensor, chunk_var: torch.Tensor, groups: int, weight: torch.Tensor,
                      bias: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """From per-chunk, per-channel moments [B, chunks, C]: the float32 [B, C] scale and shift that
    normalise each channel by its group's statistics and apply the affine parameters."""
    if chunk_mean.is_cuda and triton is not None:
        return torch.ops.sdsqueeze.group_scale_shift(chunk_mean.contiguous(), chunk_var.contiguous(), groups,
                                                     weight.contiguous(), bias.contiguous(), eps)
    batch, chunks, channels = chunk_mean.shape
    per_group = (batch, chunks, groups, channels // groups)
    chunk_mean, chunk_var = chunk_mean.reshape(per_group), chunk_var.reshape(per_group)
    # Every chunk and channel holds the same number of values, so the group's mean is the mean of
    # the chunk means and its variance the mean of (chunk variance + squared offset of chunk mean).
    mean = chunk_mean.mean(dim=(1, 3), keepdim=True)
    var = (chunk_var + (chunk_mean - mean).square()).mean(dim=(1, 3), keepdim=True)
    def per_channel(per_sample_group):  # [B, 1, G, 1] -> [B, C], each group's value for its channels
        return per_sample_group.reshape(batch, groups, 1).expand(-1, -1, channels // groups).reshape(batch, channels)

    scale = per_channel(torch.rsqrt(var + eps)) * weight.float()
    return scale, bias.float() - per_channel(mean) * scale


def chunk_moments(rows: torch.Tensor, chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel, the float32 mean and (biased) variance of each run of ``chunk_rows`` rows of a
    [N, C] tensor: two [N / chunk_rows, C] tensors."""
    if rows.is_cuda and triton is not None:
        return torch.ops.sdsqueeze.chunk_moments(rows.contiguous(), chunk_rows)
    var, mean = torch.var_mean(rows.float().reshape(-1, chunk_rows, rows.shape[1]), dim=1, correction=0)
    return mean, var


if triton is not None:
    BLOCK_CHANNELS = 64  # 128 contiguous bytes of fp16 per pixel: whole cache lines
    # Rows per loaded tile (a chunk is streamed through in tiles) and warps per program: small
    # programs, many resident per SM, keep the most loads in flight. Swept on an H200 over tiles of
    # 32-128 rows and 2-8 warps at the UNet's shapes: 2 warps won at every shape, 32-row tiles at
    # every chunk longer than 64 rows, and a chunk of 64 rows was fastest as one tile.
    BLOCK_ROWS = 32
    WHOLE_CHUNK_ROWS = 64
    MOMENTS_WARPS = 2

    @triton.jit
    def _chunk_moments_kernel(rows_ptr, mean_ptr, var_ptr, channels, CHUNK_ROWS: tl.constexpr,
                              BLOCK_ROWS: tl.constexpr, BLOCK_CHANNELS: tl.constexpr):
        chunk = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK_CHANNELS + tl.arange(0, BLOCK_CHANNELS)
        inside = cols < channels
        first = chunk.to(tl.int64) * CHUNK_ROWS
        # Sums of offsets from the chunk's first row, so a mean far from zero does not cancel the
        # variance's digits (the shifted-data algorithm) while the loop still streams one tile at a time.
        pivot = tl.load(rows_ptr + first * channels + cols, mask=inside, other=0.0).to(tl.float32)
        sums = tl.zeros([BLOCK_ROWS, BLOCK_CHANNELS], dtype=tl.float32)
        squares = tl.zeros([BLOCK_ROWS, BLOCK_CHANNELS], dtype=tl.float32)
        for start in tl.range(0, CHUNK_ROWS, BLOCK_ROWS):
            row = first + start + tl.arange(0, BLOCK_ROWS)
            values = tl.load(rows_ptr + row[:, None] * channels + cols[None, :], mask=inside[None, :], other=0.0)
            offsets = values.to(tl.float32) - pivot[None, :]
            sums += offsets
            squares += offsets * offsets
        mean_offset = tl.sum(sums, axis=0) / CHUNK_ROWS
        var = tl.maximum(tl.sum(squares, axis=0) / CHUNK_ROWS - mean_offset * mean_offset, 0.0)
        tl.store(mean_ptr + chunk * channels + cols, pivot + mean_offset, mask=inside)
        tl.store(var_ptr + chunk * channels + cols, var, mask=inside)

    @torch.library.triton_op("sdsqueeze::chunk_moments", mutates_args=())
    def _chunk_moments_op(rows: torch.Tensor, chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        count, channels = rows.shape
        mean = rows.new_empty((count // chunk_rows, channels), dtype=torch.float32)
        var = torch.empty_like(mean)
        grid = (count // chunk_rows, triton.cdiv(channels, BLOCK_CHANNELS))
        torch.library.wrap_triton(_chunk_moments_kernel)[grid](
            rows, mean, var, channels, CHUNK_ROWS=chunk_rows,
            BLOCK_ROWS=chunk_rows if chunk_rows <= WHOLE_CHUNK_ROWS else BLOCK_ROWS,
            BLOCK_CHANNELS=BLOCK_CHANNELS, num_warps=MOMENTS_WARPS)
        return mean, var


    @triton.jit
    def _group_scale_shift_kernel(mean_ptr, var_ptr, weight_ptr, bias_ptr, scale_ptr, shift_ptr, eps, chunks,
                                  channels, GROUP_CHANNELS: tl.constexpr, BLOCK_CHUNKS: tl.constexpr,
                                  BLOCK_GROUP: tl.constexpr):
        sample, group = tl.program_id(0), tl.program_id(1)
        chunk = tl.arange(0, BLOCK_CHUNKS)
        col = group * GROUP_CHANNELS + tl.arange(0, BLOCK_GROUP)
        col_inside = tl.arange(0, BLOCK_GROUP) < GROUP_CHANNELS
        inside = (chunk[:, None] < chunks) & col_inside[None, :]
        offsets = (sample * chunks + chunk[:, None]) * channels + col[None, :]
        chunk_mean = tl.load(mean_ptr + offsets, mask=inside, other=0.0)
        chunk_var = tl.load(var_ptr + offsets, mask=inside, other=0.0)
        count = chunks * GROUP_CHANNELS
        mean = tl.sum(tl.sum(chunk_mean, axis=1), axis=0) / count
        spread = tl.where(inside, chunk_var + (chunk_mean - mean) * (chunk_mean - mean), 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(tl.sum(spread, axis=1), axis=0) / count + eps)
        scale = rstd * tl.load(weight_ptr + col, mask=col_inside, other=0.0).to(tl.float32)
        shift = tl.load(bias_ptr + col, mask=col_inside, other=0.0).to(tl.float32) - mean * scale
        tl.store(scale_ptr + sample * channels + col, scale, mask=col_inside)
        tl.store(shift_ptr + sample * channels + col, shift, mask=col_inside)

    @torch.library.triton_op("sdsqueeze::group_scale_shift", mutates_args=())
    def _group_scale_shift_op(chunk_mean: torch.Tensor, chunk_var: torch.Tensor, groups: int, weight: torch.Tensor,
                              bias: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        batch, chunks, channels = chunk_mean.shape
        scale = chunk_mean.new_empty((batch, channels))
        shift = torch.empty_like(scale)
        group_channels = channels // groups
        torch.library.wrap_triton(_group_scale_shift_kernel)[(batch, groups)](
            chunk_mean, chunk_var, weight, bias, scale, shift, eps, chunks, channels, GROUP_CHANNELS=group_channels,
            BLOCK_CHUNKS=triton.next_power_of_2(chunks), BLOCK_GROUP=triton.next_power_of_2(group_channels))
        return scale, shift


def use_channels_last_group_norm(*modules: nn.Module) -> int:
    """Swap every ``nn.GroupNorm`` under ``modules`` for ``ChannelsLastGroupNorm``; returns how many."""
    swapped = 0
    for root in modules:
        for module in root.modules():
            if type(module) is nn.GroupNorm:
                module.__class__ = ChannelsLastGroupNorm
                swapped += 1
    return swapped
