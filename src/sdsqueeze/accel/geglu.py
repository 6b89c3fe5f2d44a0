"""GEGLU as one GEMM whose epilogue applies the gate: ``x W_v^T + b_v`` times ``gelu(x W_g^T + b_g)``.

Why by hand: diffusers' ``GEGLU`` runs its projection as one cuBLAS GEMM that writes both halves
(value and gate, 2 x dim_out columns) to memory, and Inductor then reads them back for the gelu and
the product. In SD 1.5 that round trip is the largest elementwise kernel of the UNet (batch 8 at
64x64: 168 MB written, read again, 84 MB written). cuBLAS has no epilogue that multiplies two
column blocks, and Inductor's GEMM templates fuse pointwise epilogues of one output, not a gate
from the other half of the columns. Here each program computes the same tile of both halves from
one read of its input rows, so only the gated result reaches memory.

Accumulation is float32 in blocks of ``BLOCK_K`` along K, the same for every tile shape, so the
result does not depend on the launch configuration; bias, gelu (exact, erf) and product are taken
in float32 and rounded once, where the stock path rounds the projection to 16 bits first.
Off CUDA, for other dtypes and for projections that are not a plain ``nn.Linear`` (the 8-bit
builds' quantised layers), the stock forward runs.

Measured on an H200 (docs/lowbit.md, variant ``fp16-compiled-host-gn-geglu``), this kernel took more
time than cuBLAS's GEMM and Inductor's gate kernel together: its GEMM ran at a lower share of the
bf16 peak than cuBLAS's. It stays behind its switch until it beats them.
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
# Triton's autotuner times these tiles (of each half) per shape on the GPU and keeps the fastest.
TUNED_LAUNCHES = [(128, 128, 8, 3), (128, 128, 8, 4), (128, 64, 4, 4), (64, 128, 4, 4)]
# Triton's interpreter (tests on the CPU) has nothing to time: one small tile.
INTERPRETER_LAUNCH = {"BLOCK_M": 64, "BLOCK_N": 32, "GROUP_M": 2}


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
        row_tiles, col_tiles = tl.cdiv(rows, BLOCK_M), tl.cdiv(cols, BLOCK_N)
        per_group = GROUP_M * col_tiles
        first_row_tile = (pid // per_group) * GROUP_M
        group_rows = tl.minimum(row_tiles - first_row_tile, GROUP_M)
        row_tile = first_row_tile + (pid % per_group) % group_rows
        col_tile = (pid % per_group) // group_rows

        row = row_tile * BLOCK_M + tl.arange(0, BLOCK_M)
        col = col_tile * BLOCK_N + tl.arange(0, BLOCK_N)
        k = tl.arange(0, BLOCK_K)
        row_inside, col_inside = row < rows, col < cols
        x_tile = x_ptr + row.to(tl.int64)[:, None] * depth + k[None, :]
        value_tile = w_ptr + col.to(tl.int64)[None, :] * depth + k[:, None]  # W_v^T: [BLOCK_K, BLOCK_N]
        gate_tile = value_tile + cols * depth  # the gate's rows follow the value's in the weight
        value = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start in range(0, depth, BLOCK_K):
            k_inside = k < depth - start
            x = tl.load(x_tile, mask=row_inside[:, None] & k_inside[None, :], other=0.0)
            w_mask = k_inside[:, None] & col_inside[None, :]
            value = tl.dot(x, tl.load(value_tile, mask=w_mask, other=0.0), value)
            gate = tl.dot(x, tl.load(gate_tile, mask=w_mask, other=0.0), gate)
            x_tile += BLOCK_K
            value_tile += BLOCK_K
            gate_tile += BLOCK_K
        if HAS_BIAS:
            value += tl.load(bias_ptr + col, mask=col_inside, other=0.0).to(tl.float32)[None, :]
            gate += tl.load(bias_ptr + cols + col, mask=col_inside, other=0.0).to(tl.float32)[None, :]
        gated = value * (0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476)))
        out = out_ptr + row.to(tl.int64)[:, None] * cols + col[None, :]
        tl.store(out, gated.to(out_ptr.dtype.element_ty), mask=row_inside[:, None] & col_inside[None, :])

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
            return (triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(cols, meta["BLOCK_N"]),)

        torch.library.wrap_triton(kernel)[grid](
            x, weight.contiguous(), bias if bias is not None else weight, out, rows, cols, depth,
            HAS_BIAS=bias is not None, BLOCK_K=BLOCK_K, **launch)
        return out
