"""SD 1.5's 3x3 convolution shapes, one at a time: cuDNN fp16 (channels_last, its own algorithm
timing) against the Triton implicit-GEMM kernel of ``sdsqueeze.accel.fp8conv`` in fp8 e4m3, int8
(int32 accumulation) and fp16, and an fp8 ``torch._scaled_mm`` and an int8 ``torch._int_mm`` GEMM of
the same FLOPs (the rate a conv could reach if it ran at GEMM speed). Batch 8 = batch 4 with classifier-free guidance, 512 px (latent 64x64)."""

from __future__ import annotations

import functools

import pandas as pd
import torch

from sdsqueeze.accel import fp8conv
from sdsqueeze.accel.measure import kernel_seconds

# (H=W of the input, Cin, Cout, stride): the UNet's resnet and downsampler convolutions
SHAPES = ((64, 320, 320, 1), (64, 640, 320, 1), (64, 960, 320, 1), (64, 320, 320, 2),
          (32, 320, 640, 1), (32, 640, 640, 1), (32, 1280, 640, 1), (32, 1920, 640, 1), (32, 640, 640, 2),
          (16, 640, 1280, 1), (16, 1280, 1280, 1), (16, 2560, 1280, 1), (16, 1280, 1280, 2),
          (8, 1280, 1280, 1), (8, 2560, 1280, 1))
BATCH = 8


@functools.cache  # one trace per process: the tables ask for it per run
def unet_conv_shapes(image_size: int = 512) -> dict[tuple[int, int, int, int], int]:
    """(input H=W, Cin, Cout, stride) -> how often that 3x3 conv runs in one SD 1.5 UNet call: the
    UNet built on the meta device (shapes only, no weights, no arithmetic), its convs' inputs recorded."""
    from collections import Counter

    from sdsqueeze.models import SD15_ARCHITECTURE, build_sd_components

    with torch.device("meta"):
        unet = build_sd_components(SD15_ARCHITECTURE, image_size)[0]
    seen: Counter = Counter()

    def record(conv, args, _out):
        if conv.kernel_size == (3, 3):
            seen[(args[0].shape[-1], conv.in_channels, conv.out_channels, conv.stride[0])] += 1

    for module in unet.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(record)
    latent = image_size // 8
    with torch.no_grad():
        unet(torch.empty(1, 4, latent, latent, device="meta"), torch.tensor(1, device="meta"),
             encoder_hidden_states=torch.empty(1, 77, SD15_ARCHITECTURE.text_hidden, device="meta"))
    return dict(seen)


def conv_flops(size: int, cin: int, cout: int, stride: int, batch: int = BATCH) -> int:
    out_hw = fp8conv.out_size(size, 3, stride, 1)
    return 2 * batch * out_hw * out_hw * cin * 9 * cout


def conv_rates(device: str, log) -> pd.DataFrame:
    torch.backends.cudnn.benchmark = True
    rows = []
    for size, cin, cout, stride in SHAPES:
        row = {"hw": size, "cin": cin, "cout": cout, "stride": stride}
        try:
            row.update(_one_shape(device, size, cin, cout, stride))
        except Exception as err:  # noqa: BLE001 -- recorded, the next shape runs
            row["status"] = f"error: {type(err).__name__}: {str(err)[:200]}"
        rows.append(row)
        log(f"conv {size}x{size} {cin}->{cout} s{stride}: " + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k not in ("hw", "cin", "cout", "stride")))
    torch.backends.cudnn.benchmark = False
    return pd.DataFrame(rows)


def _one_shape(device: str, size: int, cin: int, cout: int, stride: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(BATCH, cin, size, size, device=device, dtype=torch.float16).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1).to(device, torch.float16)
    conv = conv.to(memory_format=torch.channels_last)
    out_hw = fp8conv.out_size(size, 3, stride, 1)
    flops = conv_flops(size, cin, cout, stride)

    def rate(seconds):
        return flops / seconds / 1e12

    with torch.inference_mode():
        reference = conv(x)
        cudnn = rate(kernel_seconds(lambda: conv(x)))
        x_nhwc = x.permute(0, 2, 3, 1).contiguous()
        act_scale = (x.abs().amax().float() / fp8conv.FP8_MAX).reshape(1)
        weight = conv.weight.float().permute(0, 2, 3, 1).reshape(cout, -1)
        w_scale = weight.abs().amax(dim=1) / fp8conv.FP8_MAX
        w_q = (weight / w_scale[:, None]).to(fp8conv.FP8).contiguous()
        x_q = (x_nhwc.float() / act_scale).to(fp8conv.FP8)
        bias = conv.bias.float()

        def fp8_call():
            return fp8conv.launch(x_q, w_q, w_scale, act_scale, bias, 3, stride, 1, torch.float16)

        fp8_out = fp8_call()  # tunes on first call
        config = getattr(fp8conv._implicit_gemm_conv_tuned, "best_config", None)  # before fp16 retunes it
        triton_fp8 = rate(kernel_seconds(fp8_call))
        simulated = fp8conv.conv_reference(x_q, w_q, w_scale, act_scale, bias, 3, stride, 1, torch.float32)
        ref_nhwc = reference.permute(0, 2, 3, 1).float()
        w16 = conv.weight.permute(0, 2, 3, 1).reshape(cout, -1).contiguous()
        ones, one = torch.ones(cout, device=device), torch.ones(1, device=device)

        def fp16_call():
            return fp8conv.launch(x_nhwc, w16, ones, one, conv.bias, 3, stride, 1, torch.float16)

        fp16_out = fp16_call()
        triton_fp16 = rate(kernel_seconds(fp16_call))
        rows, k = BATCH * out_hw * out_hw, 9 * cin
        a = torch.randn(rows, k, device=device).to(fp8conv.FP8)
        b = torch.randn(cout, k, device=device).to(fp8conv.FP8).t()
        gemm = rate(kernel_seconds(lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)))
        int8 = _int8_shape(x_nhwc, weight, bias, stride, rate, ref_nhwc, device, rows, k, cout)
    return {"status": "ok", "cudnn_fp16_tflops": cudnn, "triton_fp8_tflops": triton_fp8,
            "triton_fp16_tflops": triton_fp16, "fp8_gemm_same_flops_tflops": gemm,
            "fp8_kernel_vs_simulation_rel_err": _rel(fp8_out.float(), simulated),
            "fp8_vs_fp16_conv_rel_err": _rel(fp8_out.float(), ref_nhwc),
            "triton_fp16_vs_cudnn_rel_err": _rel(fp16_out.float(), ref_nhwc),
            "fp8_best_config": str(config), **int8}


def _int8_shape(x_nhwc, weight, bias, stride, rate, ref_nhwc, device, rows, k, cout) -> dict:
    """The same conv in int8 (symmetric, round to nearest) on the same kernel, and an int8 GEMM of its size."""
    act_scale = (x_nhwc.abs().amax().float() / fp8conv.INT8_MAX).reshape(1)
    w_scale = weight.abs().amax(dim=1) / fp8conv.INT8_MAX
    w_q = (weight / w_scale[:, None]).round().clamp(-127, 127).to(fp8conv.INT8).contiguous()
    x_q = (x_nhwc.float() / act_scale).round().clamp(-127, 127).to(fp8conv.INT8)

    def int8_call():
        return fp8conv.launch(x_q, w_q, w_scale, act_scale, bias, 3, stride, 1, torch.float16)

    int8_out = int8_call()  # tunes on first call
    triton_int8 = rate(kernel_seconds(int8_call))
    config = getattr(fp8conv._implicit_gemm_conv_tuned, "best_config", None)
    simulated = fp8conv.conv_reference(x_q, w_q, w_scale, act_scale, bias, 3, stride, 1, torch.float32)
    a = torch.randint(-127, 128, (rows, k), device=device, dtype=torch.int8)
    b = torch.randint(-127, 128, (cout, k), device=device, dtype=torch.int8).t()
    gemm = rate(kernel_seconds(lambda: torch._int_mm(a, b)))
    return {"triton_int8_tops": triton_int8, "int8_gemm_same_ops_tops": gemm,
            "int8_kernel_vs_simulation_rel_err": _rel(int8_out.float(), simulated),
            "int8_vs_fp16_conv_rel_err": _rel(int8_out.float(), ref_nhwc), "int8_best_config": str(config)}


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm())
