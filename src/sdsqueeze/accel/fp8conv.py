"""8-bit convolutions as implicit GEMMs (fp8 e4m3 and int8): a Triton kernel and the torch custom op
that wraps it.

No library ships an fp8 or int8 convolution that torch can call: cuDNN's fp8 convolutions are
reachable only through TensorRT, ``aten.convolution`` rejects float8 and int8 tensors, torchao 0.18's
float8 conv2d needs the separate ``mslk`` kernels and it has no int8 conv, and materialising im2col
(``F.unfold``) and then calling ``_scaled_mm`` runs at 50-190 TFLOP/s on an H200 (measured). So the
kernel is written here: each program computes a BLOCK_M x BLOCK_N tile of the output, rows = output
pixels (batch x height x width, channels last), columns = output channels, and walks K = kernel
taps x input channels, gathering the input rows of each tap straight from the NHWC activation
(zero padding by masks). One kernel serves both formats (and fp16, as a comparison): fp8 and fp16
inputs accumulate in fp32, int8 inputs in int32 (exact); the accumulator is scaled once in the
epilogue: ``acc * act_scale * weight_scale[channel] + bias[channel]``.

The op (``sdsqueeze::quantized_conv2d``) is opaque to torch.compile: Inductor fuses the activation's
quantisation (scale, round, clamp, cast) into the kernel that produces it (GroupNorm + SiLU),
writes 8-bit values, and this kernel reads them. On the CPU the op simulates the same arithmetic
with fp32 (fp8 and int8 values are exact in fp32; int8 sums are exact up to 2^24), so a variant
using it runs on the embedded model too.
"""

from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
INT8 = torch.int8
INT8_MAX = 127.0

try:  # Triton ships with CUDA builds of torch; the CPU path needs none of it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only without Triton
    triton = None


if triton is not None:
    # A few tile shapes, tuned per conv shape on first use. Hopper's fp8 wgmma wants K-major tiles
    # of 64+ along K; 128x128 and 128x256 output tiles keep 4-8 warps busy. BLOCK_K must divide
    # Cin (a K block never straddles two taps); the 32- and 16-wide configs serve small channel
    # counts (8-bit dot products need K >= 32 in Triton's NVIDIA backend, 16-bit ones K >= 16).
    _CONFIGS = [
        triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64}, num_warps=8, num_stages=4),
        triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 128}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_M": 256, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=3),
        triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 16}, num_warps=4, num_stages=3),
    ]

    def _dividing_configs(configs, named_args, **kwargs):
        cin = named_args["cin"]
        min_k = 32 if named_args["x_ptr"].element_size() == 1 else 16
        fits = [c for c in configs if cin % c.kwargs["BLOCK_K"] == 0 and c.kwargs["BLOCK_K"] >= min_k]
        wide = [c for c in fits if c.kwargs["BLOCK_K"] >= 64]
        return wide or fits

    @triton.jit
    def _implicit_gemm_conv_body(x_ptr, w_ptr, out_ptr, wscale_ptr, bias_ptr, act_scale_ptr,
                                 batch, height, width, cin, out_h, out_w, cout,
                                 stride: tl.constexpr, pad: tl.constexpr, ksize: tl.constexpr,
                                 HAS_BIAS: tl.constexpr, INT_ACC: tl.constexpr, BLOCK_M: tl.constexpr,
                                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output pixels, NHW order
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # output channels
        ks = tl.arange(0, BLOCK_K)
        total = batch * out_h * out_w
        row_ok = rows < total
        col_ok = cols < cout
        ow = rows % out_w
        oh = (rows // out_w) % out_h
        n = rows // (out_w * out_h)
        if INT_ACC:  # int8 x int8 products summed exactly in int32
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        else:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        k_total = ksize * ksize * cin  # weight rows are laid out [cout, tap, cin] (K-major)
        w_rows = w_ptr + cols[:, None].to(tl.int64) * k_total
        # One flat K loop over (tap, channel block), so Triton pipelines all of it.
        for k in range(0, k_total, BLOCK_K):
            tap = k // cin
            c0 = k - tap * cin
            ih = oh * stride + tap // ksize - pad
            iw = ow * stride + tap % ksize - pad
            inside = row_ok & (ih >= 0) & (ih < height) & (iw >= 0) & (iw < width)
            x_row = ((n * height + ih) * width + iw).to(tl.int64) * cin + c0
            a = tl.load(x_ptr + x_row[:, None] + ks[None, :], mask=inside[:, None], other=0.0)
            b = tl.load(w_rows + (k + ks)[None, :], mask=col_ok[:, None], other=0.0)
            # out_dtype spelled out: older Tritons take float32 by default, whatever acc holds.
            if INT_ACC:
                acc = tl.dot(a, tl.trans(b), acc, out_dtype=tl.int32)
            else:
                acc = tl.dot(a, tl.trans(b), acc, out_dtype=tl.float32)
        scale = tl.load(wscale_ptr + cols, mask=col_ok, other=0.0) * tl.load(act_scale_ptr)
        result = acc.to(tl.float32) * scale[None, :]
        if HAS_BIAS:
            result = result + tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        out = out_ptr + rows[:, None].to(tl.int64) * cout + cols[None, :]
        tl.store(out, result.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])

    _implicit_gemm_conv_tuned = triton.autotune(
        configs=_CONFIGS, key=["cin", "cout", "out_h", "out_w", "batch", "stride", "ksize"],
        prune_configs_by={"early_config_prune": _dividing_configs},
    )(_implicit_gemm_conv_body)


def conv_reference(x_nhwc: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                   act_scale: torch.Tensor, bias: torch.Tensor | None, ksize: int, stride: int, pad: int,
                   out_dtype: torch.dtype) -> torch.Tensor:
    """The op's arithmetic in fp32 (the CPU path and the GPU kernel's check): dequantise, convolve."""
    cout, cin = weight_q.shape[0], x_nhwc.shape[-1]
    x = x_nhwc.float().permute(0, 3, 1, 2) * act_scale.float()
    w = (weight_q.float() * weight_scale.float()[:, None]).reshape(cout, ksize, ksize, cin).permute(0, 3, 1, 2)
    y = torch.nn.functional.conv2d(x, w, None if bias is None else bias.float(), stride=stride, padding=pad)
    return y.permute(0, 2, 3, 1).to(out_dtype).contiguous()


def out_size(size: int, ksize: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - ksize) // stride + 1


def launch(x_nhwc: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor, act_scale: torch.Tensor,
           bias: torch.Tensor | None, ksize: int, stride: int, pad: int, out_dtype: torch.dtype,
           config: dict | None = None) -> torch.Tensor:
    """Run the Triton kernel (tuned, or with one fixed ``config`` of BLOCK_M/N/K, num_warps,
    num_stages); x is [N, H, W, Cin], weight [Cout, k * k * Cin] (taps, then channels), both
    quantised to the same format (fp8 e4m3 or int8; fp16 for comparisons) and contiguous."""
    batch, height, width, cin = x_nhwc.shape
    cout = weight_q.shape[0]
    if cin % 16:
        raise ValueError(f"the implicit-GEMM kernel takes input channels in multiples of 16, not {cin}")
    oh, ow = out_size(height, ksize, stride, pad), out_size(width, ksize, stride, pad)
    out = torch.empty(batch, oh, ow, cout, device=x_nhwc.device, dtype=out_dtype)
    args = (x_nhwc, weight_q, out, weight_scale, bias if bias is not None else weight_scale,
            act_scale, batch, height, width, cin, oh, ow, cout)
    if x_nhwc.dtype != weight_q.dtype:
        raise ValueError(f"activation ({x_nhwc.dtype}) and weight ({weight_q.dtype}) must share one format")
    flags = {"stride": stride, "pad": pad, "ksize": ksize, "HAS_BIAS": bias is not None,
             "INT_ACC": x_nhwc.dtype == INT8}
    total = batch * oh * ow
    if config is None:
        def grid(meta):
            return (triton.cdiv(total, meta["BLOCK_M"]), triton.cdiv(cout, meta["BLOCK_N"]))

        _implicit_gemm_conv_tuned[grid](*args, **flags)
    else:
        tiles = {k: config[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")}
        grid = (triton.cdiv(total, tiles["BLOCK_M"]), triton.cdiv(cout, tiles["BLOCK_N"]))
        _implicit_gemm_conv_body[grid](*args, **flags, **tiles,
                                       num_warps=config.get("num_warps", 4), num_stages=config.get("num_stages", 2))
    return out


@torch.library.custom_op("sdsqueeze::quantized_conv2d", mutates_args=())
def quantized_conv2d(x_nhwc: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                     act_scale: torch.Tensor, bias: torch.Tensor | None, ksize: int, stride: int, pad: int,
                     out_dtype: torch.dtype) -> torch.Tensor:
    """Convolution of a quantised (fp8 or int8) NHWC activation with a [Cout, k * k * Cin] weight of
    the same format (2-D, so channels_last conversions of the module leave it alone); returns
    [N, H', W', Cout] in ``out_dtype``. act_scale is a one-element fp32 tensor."""
    x_nhwc, weight_q = x_nhwc.contiguous(), weight_q.contiguous()
    if x_nhwc.is_cuda and triton is not None:
        return launch(x_nhwc, weight_q, weight_scale, act_scale, bias, ksize, stride, pad, out_dtype)
    return conv_reference(x_nhwc, weight_q, weight_scale, act_scale, bias, ksize, stride, pad, out_dtype)


@quantized_conv2d.register_fake
def _(x_nhwc, weight_q, weight_scale, act_scale, bias, ksize, stride, pad, out_dtype):
    batch, height, width, _ = x_nhwc.shape
    cout = weight_q.shape[0]
    return x_nhwc.new_empty(batch, out_size(height, ksize, stride, pad), out_size(width, ksize, stride, pad),
                            cout, dtype=out_dtype)
