"""GEGLU as one GEMM whose epilogue applies the gate: ``x W_v^T + b_v`` times ``gelu(x W_g^T + b_g)``.

Why by hand: diffusers' ``GEGLU`` runs its projection as one cuBLAS GEMM that writes both halves
(value and gate, 2 x dim_out columns) to memory, and Inductor then reads them back for the gelu and
the product. In SD 1.5 that round trip is the largest elementwise kernel of the UNet (batch 8 at
64x64: 168 MB written, read again, 84 MB written). cuBLAS has no epilogue that multiplies two
column blocks, and Inductor's GEMM templates fuse pointwise epilogues of one output, not a gate
from the other half of the columns. Here each program computes a tile of value and gate columns,
interleaved in pairs, as one accumulator (one wide product per K step, as in a plain GEMM), and its
epilogue splits the pairs: only the gated result reaches memory.

Accumulation is float32 in blocks of ``BLOCK_K`` along K, the same for every tile shape, so the
result does not depend on the launch configuration; bias, gelu (exact, erf) and product are taken
in float32 and rounded once, where the stock path rounds the projection to 16 bits first.
Off CUDA, for other dtypes and for projections that are not a plain ``nn.Linear`` (the 8-bit
builds' quantised layers), the stock forward runs.

Measured on an H200 (docs/lowbit.md and docs/kernel-limits.md, variant ``fp16-compiled-host-gn-geglu``)
against cuBLAS's GEMM plus Inductor's gate kernel; it stays behind its switch.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only torch builds: the stock forward serves every device
    triton = None

FUSED_DTYPES = (torch.float16, torch.bfloat16)
BLOCK_K = 64  # one K step for every configuration, so the tuned choice never changes the sums
# Triton's autotuner times these tiles (BLOCK_N counts value and gate columns, interleaved; rows,
# columns, warps, stages) per shape on the GPU and keeps the fastest.
TUNED_LAUNCHES = [(128, 256, 8, 3), (128, 256, 8, 4), (256, 128, 8, 3), (128, 128, 8, 4), (128, 128, 4, 4),
                  (64, 256, 4, 4)]
# Triton's interpreter (tests on the CPU) has nothing to time: one small tile.
INTERPRETER_LAUNCH = {"BLOCK_M": 64, "BLOCK_N": 64, "GROUP_M": 2}


@functools.cache  # one class, so every swapped module has the same type
def geglu_class():
    from diffusers.models.activations import GEGLU

    class FusedGEGLU(GEGLU):
        """diffusers' ``GEGLU`` with the same parameters (the class is swapped in place)."""

        def forward(self, hidden_states, *args, **kwargs):
            proj = self.proj
            if (hidden_states.is_cuda and triton is not None and type(proj) is nn.Linear
                    and hidden_states.dtype in FUSED_DTYPES and proj.weight.dtype == hidden_states.dtype):
                rows = hidden_states.reshape(-1, hidden_states.shape[-1])
                out = torch.ops.sdsqueeze.geglu(rows.contiguous(), proj.weight, proj.bias)
                return out.reshape(*hidden_states.shape[:-1], out.shape[-1])
            return super().forward(hidden_states, *args, **kwargs)

    return FusedGEGLU


def use_fused_geglu(*modules: nn.Module) -> int:
    """Swap every diffusers ``GEGLU`` under ``modules`` for the fused form; returns how many."""
    from diffusers.models.activations import GEGLU

    fused = geglu_class()
    swapped = 0
    for root in modules:
        for module in root.modules():
            if type(module) is GEGLU:
                module.__class__ = fused
                swapped += 1
    return swapped


if triton is not None:
    @triton.jit
    def _geglu_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, rows, cols, depth, HAS_BIAS: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
        # Programs walk GROUP_M row tiles per column tile, so neighbours share weight tiles in L2.
        pid = tl.program_id(0)
        half_n: tl.constexpr = BLOCK_N // 2  # gated outputs per tile
        row_tiles, col_tiles = tl.cdiv(rows, BLOCK_M), tl.cdiv(cols, half_n)
        per_group = GROUP_M * col_tiles
        first_row_tile = (pid // per_group) * GROUP_M
        group_rows = tl.minimum(row_tiles - first_row_tile, GROUP_M)
        row_tile = first_row_tile + (pid % per_group) % group_rows
        col_tile = (pid % per_group) // group_rows

        row = row_tile * BLOCK_M + tl.arange(0, BLOCK_M)
        # One accumulator over interleaved columns: column 2j is output j's value, 2j+1 its gate (whose
        # weight row follows the values' by ``cols``). One wide dot per K step, as in a plain GEMM; the
        # epilogue splits the pairs. The interleaving lives in the pointers: no reordered weight copy.
        pair = tl.arange(0, BLOCK_N)
        out_col = col_tile * half_n + pair // 2
        weight_row = out_col + (pair % 2) * cols
        k = tl.arange(0, BLOCK_K)
        row_inside, pair_inside = row < rows, out_col < cols
        x_tile = x_ptr + row.to(tl.int64)[:, None] * depth + k[None, :]
        w_tile = w_ptr + weight_row.to(tl.int64)[None, :] * depth + k[:, None]  # [BLOCK_K, BLOCK_N] of W^T
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start in range(0, depth, BLOCK_K):
            k_inside = k < depth - start
            x = tl.load(x_tile, mask=row_inside[:, None] & k_inside[None, :], other=0.0)
            w = tl.load(w_tile, mask=k_inside[:, None] & pair_inside[None, :], other=0.0)
            acc = tl.dot(x, w, acc)
            x_tile += BLOCK_K
            w_tile += BLOCK_K
        if HAS_BIAS:
            acc += tl.load(bias_ptr + weight_row, mask=pair_inside, other=0.0).to(tl.float32)[None, :]
        value, gate = tl.split(tl.reshape(acc, (BLOCK_M, half_n, 2)))
        gated = value * (0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476)))
        col = col_tile * half_n + tl.arange(0, half_n)
        out = out_ptr + row.to(tl.int64)[:, None] * cols + col[None, :]
        tl.store(out, gated.to(out_ptr.dtype.element_ty), mask=row_inside[:, None] & (col < cols)[None, :])

    _tuned_geglu_kernel = triton.autotune(
        configs=[triton.Config({"BLOCK_M": m, "BLOCK_N": n, "GROUP_M": 8}, num_warps=warps, num_stages=stages)
                 for m, n, warps, stages in TUNED_LAUNCHES],
        key=["rows", "cols", "depth"])(_geglu_kernel)

    @torch.library.triton_op("sdsqueeze::geglu", mutates_args=())
    def _geglu_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows, depth = x.shape
        cols = weight.shape[0] // 2
        out = x.new_empty((rows, cols))
        kernel, launch = (_tuned_geglu_kernel, {}) if x.is_cuda else (_geglu_kernel, INTERPRETER_LAUNCH)

        def grid(meta):
            return (triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(cols, meta["BLOCK_N"] // 2),)

        torch.library.wrap_triton(kernel)[grid](
            x, weight.contiguous(), bias if bias is not None else weight, out, rows, cols, depth,
            HAS_BIAS=bias is not None, BLOCK_K=BLOCK_K, **launch)
        return out
