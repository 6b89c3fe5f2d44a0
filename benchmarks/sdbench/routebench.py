"""Routes past the best 16-bit build's kernels, each measured alone at SD 1.5's UNet shapes (batch 8 =
batch 4 with classifier-free guidance, 512 px, fp16) against the kernel the build runs now:

- **Exponentials in pairs**: ``ex2.approx.f16x2`` against fp32 ``exp2``, in independent chains: whether
  16-bit exponentials raise the special-function unit's rate, the limit of attention at head dim 40.
- **Attention written for head dim 40** (``sdbench/shorthead.py``: the head as 48 columns, exponentials
  in pairs, row sums from the PV product) against cuDNN's SDPA at the 64x64 self-attention, on the
  fused QKV projection's strided views, as the build calls it; a few launch shapes, the fastest kept.
- **Autotuned GEMMs**: Inductor's ``max_autotune_gemm`` (Triton templates, persistent TMA kernels,
  epilogues fused) against Inductor's default (cuBLAS, then its own kernel for a residual add) at the
  UNet's linear shapes, with the residual where the UNet has one.

Every time is a CUDA-graph replay (``kernelbench.graph_seconds``), as the compiled builds run.
"""

from __future__ import annotations

import functools
import time

import pandas as pd
import torch
import torch.nn.functional as F

from .kernelbench import BATCH, EXP_ITERATIONS, exp_chain_launch, exp_chains, graph_seconds, kernel_seconds, log_row

# (rows = batch x tokens, in features, out features, residual added) of the UNet's linears: fused QKV,
# attention output, GEGLU projection and feed-forward output at 64x64, and the widest at 32x32, 16x16.
GEMM_SHAPES = [(BATCH * 4096, 320, 960, False), (BATCH * 4096, 320, 320, True), (BATCH * 4096, 320, 2560, False),
               (BATCH * 4096, 1280, 320, True), (BATCH * 1024, 640, 5120, False), (BATCH * 256, 5120, 1280, True)]
AUTOTUNE_GEMMS = {"max_autotune_gemm": True, "max_autotune_gemm_backends": "ATEN,TRITON",
                  "triton.enable_persistent_tma_matmul": True, "epilogue_fusion": True}
SELF_ATTENTION = (8, 4096, 40)  # heads, tokens, head dim of the 64x64 blocks
# (parts, block_m, block_n, warps, stages, exponentials in pairs): the fastest of a wider sweep on an
# H200, each with and without paired exponentials, and the 64-column padding for comparison.
ATTENTION_LAUNCHES = [((32, 16), 128, 128, 4, 3, True), ((32, 16), 128, 128, 4, 3, False),
                      ((32, 16), 128, 64, 4, 3, True), ((32, 16), 128, 64, 4, 3, False),
                      ((32, 32), 128, 64, 8, 2, True)]


def exp_rates(device: str, log) -> list[dict]:
    from .shorthead import exp2_pair_chains

    programs, block = exp_chain_launch(device)
    out = torch.empty(programs * block, device=device)
    half = out.half()
    count = out.numel() * EXP_ITERATIONS
    fp32 = kernel_seconds(lambda: exp_chains(out, programs, block))
    pairs = kernel_seconds(lambda: exp2_pair_chains(half, programs, block, EXP_ITERATIONS))
    row = {"kind": "exp2", "route": "ex2.approx.f16x2", "current": "fp32 exp2", "current_us": fp32 * 1e6,
           "route_us": pairs * 1e6, "speedup": fp32 / pairs, "current_rate": count / fp32 / 1e12,
           "route_rate": count / pairs / 1e12}
    log_row(log, "route", row)
    return [row]


def attention_rates(device: str, log) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .shorthead import attention

    heads, tokens, head_dim = SELF_ATTENTION
    generator = torch.Generator(device).manual_seed(0)
    qkv = torch.randn(BATCH, tokens, 3 * heads * head_dim, device=device, dtype=torch.float16, generator=generator)
    q, k, v = (t.view(BATCH, tokens, heads, head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        cudnn = graph_seconds(lambda _: F.scaled_dot_product_attention(q, k, v), qkv)
        cudnn_error = (F.scaled_dot_product_attention(q, k, v).float() - reference).abs().max().item()
    rows = []
    for parts, block_m, block_n, warps, stages, pairs in ATTENTION_LAUNCHES:
        call = functools.partial(attention, q, k, v, parts=parts, block_m=block_m, block_n=block_n,
                                 num_warps=warps, num_stages=stages, half_exp=pairs)
        error = (call().float() - reference).abs().max().item()
        seconds = graph_seconds(lambda _, run=call: run(), qkv)
        row = {"kind": "attention", "route": f"head as {sum(parts)} columns, exp2 {'in pairs' if pairs else 'fp32'}, "
               f"tile {block_m}x{block_n}, {warps} warps, {stages} stages", "current": "cuDNN SDPA",
               "current_us": cudnn * 1e6, "route_us": seconds * 1e6, "speedup": cudnn / seconds,
               "current_error": cudnn_error, "route_error": error,
               "shape": f"{heads} heads x {tokens} x {tokens}, head dim {head_dim}"}
        rows.append(row)
        log_row(log, "route", row)
    return rows


def gemm_rates(device: str, log, deadline: float = 0) -> list[dict]:
    rows = []
    for m, depth, width, residual in GEMM_SHAPES:
        if deadline and time.time() > deadline:
            log(f"route gemm {m}x{depth}x{width}: not timed (time budget)")
            continue
        generator = torch.Generator(device).manual_seed(0)
        x = torch.randn(m, depth, device=device, dtype=torch.float16, generator=generator)
        weight = torch.randn(width, depth, device=device, dtype=torch.float16, generator=generator) / depth ** 0.5
        bias = torch.randn(width, device=device, dtype=torch.float16, generator=generator)
        skip = torch.randn(m, width, device=device, dtype=torch.float16, generator=generator)

        linear = functools.partial(_linear, weight=weight, bias=bias, skip=skip if residual else None)
        seconds = {}
        for name, options in (("default", {}), ("autotuned", AUTOTUNE_GEMMS)):
            torch._dynamo.reset()  # one compile per shape and setting
            compiled = torch.compile(linear, dynamic=False, options=options)
            seconds[name] = graph_seconds(compiled, x)
        flops = 2 * m * depth * width
        row = {"kind": "gemm", "route": "Inductor max_autotune_gemm", "current": "Inductor default (cuBLAS)",
               "current_us": seconds["default"] * 1e6, "route_us": seconds["autotuned"] * 1e6,
               "speedup": seconds["default"] / seconds["autotuned"],
               "current_rate": flops / seconds["default"] / 1e12, "route_rate": flops / seconds["autotuned"] / 1e12,
               "shape": f"{m} x {depth} -> {width}" + (" + residual" if residual else "")}
        rows.append(row)
        log_row(log, "route", row)
    return rows


def _linear(x, weight, bias, skip):
    out = F.linear(x, weight, bias)
    return out if skip is None else out + skip


def route_rates(device: str, log, deadline: float = 0) -> pd.DataFrame:
    """Every route's rows; GEMMs last (their autotuning compiles longest) and skipped past ``deadline``."""
    return pd.DataFrame(exp_rates(device, log) + attention_rates(device, log) + gemm_rates(device, log, deadline))
