"""A flash-attention kernel written for SD 1.5's head dim 40, measured against cuDNN's SDPA by
``sdbench.routebench`` (a route past the best 16-bit build's attention; no build uses it).

Why by hand: at SD 1.5's 64x64 self-attention (4096 queries and keys, head dim 40) every score costs
one exponential and only 160 multiply-adds, so the special-function unit (16 fp32 ``ex2`` per SM and
clock on Hopper) and the tensor cores bound it about equally (docs/kernel-limits.md). torch's flash
backend runs a 64-wide head kernel with fp32 exponentials. This kernel tries what a short head allows:

- The head is split into a 32-wide and a 16-wide part (Triton's tile widths are powers of two, its
  fp16 products at least 16 deep), so the products run on 48 columns, not 64.
- The exponentials run as ``ex2.approx.f16x2``: two scores per instruction, in fp16, the precision
  the probabilities are rounded to anyway before they multiply V.
- The row sums come out of the PV product: V's first padding column is set to one, so the
  tensor cores add up exactly the rounded probabilities that weigh V.

Inputs are [batch, heads, tokens, head_dim] views with any strides (the fused QKV projection's
columns, no copy); the output is written token-major ([batch, tokens, heads, head_dim] in memory),
the layout the output projection reads. Off CUDA the kernel runs in Triton's interpreter (tests)
with fp32 ``exp2``.
"""

from __future__ import annotations

import math

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only torch builds: no kernel (the routes are timed on a GPU)
    triton = None

SPLIT_48 = (32, 16)  # head dim 40 as two tensor-core parts, the second padded: 48 columns
PADDED_64 = (32, 32)  # the same kernel on 64 columns, as torch's backends pad it


if triton is not None:
    @triton.jit
    def _exp2_half(x):
        # Two fp16 exponentials per special-function instruction.
        return tl.inline_asm_elementwise("ex2.approx.f16x2 $0, $1;", "=r,r", [x], dtype=tl.float16,
                                         is_pure=True, pack=2)

    @triton.jit
    def _exp2_pair_chains_kernel(out_ptr, ITERATIONS: tl.constexpr, BLOCK: tl.constexpr):
        # As kernelbench's fp32 chains: one independent chain per value, each step feeding the next.
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        value = (offsets.to(tl.float32) * 1e-7).to(tl.float16)
        for _ in range(ITERATIONS):
            value = _exp2_half(-value)
        tl.store(out_ptr + offsets, value)

    @triton.jit
    def _attention_kernel(q_ptr, k_ptr, v_ptr, out_ptr, scale_log2, heads, queries, keys,
                          sq_b, sq_h, sq_n, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n, so_b, so_h, so_n,
                          HEAD_DIM: tl.constexpr, LOW: tl.constexpr, HIGH: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HALF_EXP: tl.constexpr):
        block_m, batch_head = tl.program_id(0), tl.program_id(1)
        batch, head = batch_head // heads, batch_head % heads
        rows = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
        lo = tl.arange(0, LOW)
        hi = LOW + tl.arange(0, HIGH)
        hi_inside = hi < HEAD_DIM
        row_inside = rows < queries
        q_base = q_ptr + batch.to(tl.int64) * sq_b + head * sq_h + rows.to(tl.int64)[:, None] * sq_n
        q_lo = tl.load(q_base + lo[None, :], mask=row_inside[:, None], other=0.0)
        q_hi = tl.load(q_base + hi[None, :], mask=row_inside[:, None] & hi_inside[None, :], other=0.0)
        k_base = k_ptr + batch.to(tl.int64) * sk_b + head * sk_h
        v_base = v_ptr + batch.to(tl.int64) * sv_b + head * sv_h
        row_max = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        acc_lo = tl.zeros((BLOCK_M, LOW), tl.float32)
        acc_hi = tl.zeros((BLOCK_M, HIGH), tl.float32)  # column HEAD_DIM - LOW: the row sums
        for start in range(0, keys, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            col_inside = cols < keys
            k_rows = k_base + cols.to(tl.int64)[:, None] * sk_n
            k_lo = tl.load(k_rows + lo[None, :], mask=col_inside[:, None], other=0.0)
            k_hi = tl.load(k_rows + hi[None, :], mask=col_inside[:, None] & hi_inside[None, :], other=0.0)
            scores = tl.dot(q_lo, tl.trans(k_lo))
            scores = tl.dot(q_hi, tl.trans(k_hi), scores)
            scores = tl.where(col_inside[None, :], scores * scale_log2, float("-inf"))
            new_max = tl.maximum(row_max, tl.max(scores, 1))
            rescale = tl.exp2(row_max - new_max)
            shifted = scores - new_max[:, None]
            if HALF_EXP:
                probs = _exp2_half(shifted.to(tl.float16))
            else:
                probs = tl.exp2(shifted).to(tl.float16)
            v_rows = v_base + cols.to(tl.int64)[:, None] * sv_n
            v_lo = tl.load(v_rows + lo[None, :], mask=col_inside[:, None], other=0.0)
            v_hi = tl.load(v_rows + hi[None, :], mask=col_inside[:, None] & hi_inside[None, :], other=0.0)
            v_hi = tl.where((hi == HEAD_DIM)[None, :], 1.0, v_hi).to(v_lo.dtype)
            acc_lo = tl.dot(probs, v_lo, acc_lo * rescale[:, None])
            acc_hi = tl.dot(probs, v_hi, acc_hi * rescale[:, None])
            row_max = new_max
        row_sum = tl.sum(tl.where((hi == HEAD_DIM)[None, :], acc_hi, 0.0), 1)
        out_base = out_ptr + batch.to(tl.int64) * so_b + head * so_h + rows.to(tl.int64)[:, None] * so_n
        tl.store(out_base + lo[None, :], (acc_lo / row_sum[:, None]).to(out_ptr.dtype.element_ty),
                 mask=row_inside[:, None])
        tl.store(out_base + hi[None, :], (acc_hi / row_sum[:, None]).to(out_ptr.dtype.element_ty),
                 mask=row_inside[:, None] & hi_inside[None, :])


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, parts: tuple[int, int] = SPLIT_48,
              block_m: int = 128, block_n: int = 128, num_warps: int = 4, num_stages: int = 3,
              half_exp: bool | None = None) -> torch.Tensor:
    """softmax(QK^T / sqrt(d)) V for [batch, heads, tokens, head_dim] fp16 views; the result has that
    shape, token-major in memory. ``parts``: the widths the head is split into; their sum must exceed
    the head dim (the first padding column carries the row sums)."""
    batch, heads, queries, head_dim = query.shape
    keys = key.shape[2]
    low, high = parts
    if not low < head_dim < low + high:
        raise ValueError(f"head dim {head_dim} needs parts of widths (low, high) with low < {head_dim} < low + high")
    out = query.new_empty((batch, queries, heads, head_dim)).transpose(1, 2)
    half_exp = query.is_cuda if half_exp is None else half_exp
    grid = (triton.cdiv(queries, block_m), batch * heads)
    _attention_kernel[grid](query, key, value, out, math.log2(math.e) / math.sqrt(head_dim), heads, queries, keys,
                            *query.stride()[:3], *key.stride()[:3], *value.stride()[:3], *out.stride()[:3],
                            HEAD_DIM=head_dim, LOW=low, HIGH=high, BLOCK_M=block_m, BLOCK_N=block_n,
                            HALF_EXP=half_exp, num_warps=num_warps, num_stages=num_stages)
    return out


def exp2_pair_chains(out: torch.Tensor, programs: int, block: int, iterations: int) -> torch.Tensor:
    """``iterations`` paired fp16 exponentials per value of ``out`` (fp16, programs x block values)."""
    _exp2_pair_chains_kernel[(programs,)](out, ITERATIONS=iterations, BLOCK=block)
    return out
