"""GEGLU as one GEMM whose epilogue applies the gate: ``x W_v^T + b_v`` times ``gelu(x W_g^T + b_g)``.

Why by hand: diffusers' ``GEGLU`` runs its projection as one cuBLAS GEMM that writes both halves
(value and gate, 2 x dim_out columns) to memory, and Inductor then reads them back for the gelu and
the product. In SD 1.5 that round trip is the largest elementwise kernel of the UNet (batch 8 at
64x64: 168 MB written, read again, 84 MB written). cuBLAS has no epilogue that multiplies two
column blocks, and Inductor's GEMM templates fuse pointwise epilogues of one output, not a gate
from the other half of the columns. Here each program computes a tile of value columns and the
matching gate columns as two accumulators over the same input tile, loaded by Hopper's TMA, and its
epilogue multiplies them element by element: only the gated result reaches memory.

Accumulation is float32 in blocks of ``BLOCK_K`` along K, the same for every tile shape, so the
result does not depend on the launch configuration; bias, gelu (exact, erf) and product are taken
in float32 and rounded once, where the stock path rounds the projection to 16 bits first.
Off CUDA, for other dtypes, for widths TMA cannot address (rows not a multiple of 16 bytes) and for
projections that are not a plain ``nn.Linear`` (the 8-bit builds' quantised layers), the stock
forward runs.

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
TMA_ALIGNMENT = 8  # 16 bytes of a 16-bit dtype: TMA's rule for every row stride
BLOCK_K = 64  # one K step for every configuration, so the tuned choice never changes the sums
# Triton's autotuner times these tiles (rows, output columns, warps, stages) per shape on the GPU and keeps the fastest.
TUNED_LAUNCHES = [(128, 128, 8, 3), (128, 128, 8, 4), (256, 64, 8, 3), (128, 64, 4, 4), (64, 128, 4, 4)]
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
                    and hidden_states.dtype in FUSED_DTYPES and proj.weight.dtype == hidden_states.dtype
                    and proj.in_features % TMA_ALIGNMENT == 0 and proj.out_features % (2 * TMA_ALIGNMENT) == 0):
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
    def _geglu_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, rows, cols, depth, programs, HAS_BIAS: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
        # Tensor-memory-accelerator (TMA) descriptors: Hopper copies whole tiles to shared memory in
        # hardware, where pointer loads spend registers and issue slots on addresses; a tile past the
        # tensor's edge reads zeros and a store past it is clipped, so no masks are needed.
        x_desc = tl.make_tensor_descriptor(x_ptr, shape=[rows, depth], strides=[depth, 1],
                                           block_shape=[BLOCK_M, BLOCK_K])
        w_desc = tl.make_tensor_descriptor(w_ptr, shape=[2 * cols, depth], strides=[depth, 1],
                                           block_shape=[BLOCK_N, BLOCK_K])
        out_desc = tl.make_tensor_descriptor(out_ptr, shape=[rows, cols], strides=[cols, 1],
                                             block_shape=[BLOCK_M, BLOCK_N])
        row_tiles, col_tiles = tl.cdiv(rows, BLOCK_M), tl.cdiv(cols, BLOCK_N)
        per_group = GROUP_M * col_tiles
        # Persistent programs, one per SM, walk the tiles; GROUP_M row tiles per column tile in turn,
        # so neighbours share weight tiles in L2.
        for tile in tl.range(tl.program_id(0), row_tiles * col_tiles, programs):
            first_row_tile = (tile // per_group) * GROUP_M
            group_rows = tl.minimum(row_tiles - first_row_tile, GROUP_M)
            first_row = (first_row_tile + (tile % per_group) % group_rows) * BLOCK_M
            first_col = ((tile % per_group) // group_rows) * BLOCK_N
            # Two accumulators over the same x tile: the value columns (weight rows [0, cols)) and the
            # gate columns (rows [cols, 2 cols)), so the epilogue pairs them element by element.
            value = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k in range(0, depth, BLOCK_K):
                x = x_desc.load([first_row, k])
                value = tl.dot(x, w_desc.load([first_col, k]).T, value)
                gate = tl.dot(x, w_desc.load([cols + first_col, k]).T, gate)
            if HAS_BIAS:
                col = first_col + tl.arange(0, BLOCK_N)
                value += tl.load(bias_ptr + col, mask=col < cols, other=0.0).to(tl.float32)[None, :]
                gate += tl.load(bias_ptr + cols + col, mask=col < cols, other=0.0).to(tl.float32)[None, :]
            gated = value * (0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476)))
            out_desc.store([first_row, first_col], gated.to(out_ptr.dtype.element_ty))

    _tuned_geglu_kernel = triton.autotune(
        configs=[triton.Config({"BLOCK_M": m, "BLOCK_N": n, "GROUP_M": 8}, num_warps=warps, num_stages=stages)
                 for m, n, warps, stages in TUNED_LAUNCHES],
        key=["rows", "cols", "depth"])(_geglu_kernel)

    def _descriptor_scratch(size: int, alignment: int, stream):
        """Global memory Triton asks for when a kernel builds TMA descriptors on the device."""
        return torch.empty(size, dtype=torch.int8, device="cuda" if torch.cuda.is_available() else "cpu")

    @torch.library.triton_op("sdsqueeze::geglu", mutates_args=())
    def _geglu_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows, depth = x.shape
        cols = weight.shape[0] // 2
        out = x.new_empty((rows, cols))
        kernel, launch = (_tuned_geglu_kernel, {}) if x.is_cuda else (_geglu_kernel, INTERPRETER_LAUNCH)
        # one persistent program per SM (the interpreter: a few, so tiles are shared between programs)
        programs = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 3
        triton.set_allocator(_descriptor_scratch)  # compiled graphs: Inductor's launcher sets its own
        torch.library.wrap_triton(kernel)[(programs,)](
            x, weight.contiguous(), bias if bias is not None else weight, out, rows, cols, depth, programs,
            HAS_BIAS=bias is not None, BLOCK_K=BLOCK_K, **launch)
        return out
