"""Static-scale fp8 layers on the CPU (fp8 simulated in fp32), and the Triton implicit-GEMM conv
kernel under Triton's interpreter (TRITON_INTERPRET=1, set by the test that runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_accel import generate, relative_error
from torch import nn

from sdsqueeze.accel import fp8conv, fp8static, lowbit


def fp8_rounding_error(x: torch.Tensor) -> float:
    """Relative error of one per-tensor e4m3 round trip of ``x``: the scale the layers' errors live on."""
    scale = x.abs().amax() / fp8conv.FP8_MAX
    return relative_error((x / scale).to(fp8conv.FP8).float() * scale, x)


def test_gemm_layer_matches_linear_within_fp8_error():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(3, 10, 64)
    layer = fp8static.StaticFp8Gemm(linear.weight, linear.bias, float(x.abs().amax()), None, conv1x1=False)
    out, ref = layer(x), linear(x)
    assert out.shape == ref.shape
    error = relative_error(out, ref)
    assert 0 < error < 4 * fp8_rounding_error(x)  # quantised (not a float copy), within two roundings


def test_smoothing_keeps_the_product_and_tames_an_outlier_channel():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32, bias=False)
    x = torch.randn(256, 64)
    x[:, 5] *= 80  # one outlier channel, as in transformer activations
    channel_amax = x.abs().amax(dim=0)
    smooth = fp8static.smoothing(channel_amax, linear.weight, 0.8)
    amax = float((channel_amax / smooth).max())
    smoothed = fp8static.StaticFp8Gemm(linear.weight, None, amax, smooth, conv1x1=False)
    plain = fp8static.StaticFp8Gemm(linear.weight, None, float(x.abs().amax()), None, conv1x1=False)
    ref = linear(x)
    assert fp8static.outlier_ratio(channel_amax) > 20
    assert relative_error(smoothed(x), ref) < relative_error(plain(x), ref)


def test_conv_layers_match_float_convs():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 9, 9).to(memory_format=torch.channels_last)
    for conv in (nn.Conv2d(32, 48, 3, padding=1), nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.Conv2d(32, 48, 1)):
        amax = float(x.abs().amax())
        layer = (fp8static.StaticFp8Gemm(conv.weight.flatten(1), conv.bias, amax, None, conv1x1=True)
                 if conv.kernel_size == (1, 1) else fp8static.StaticFp8Conv(conv, amax))
        out, ref = layer(x), conv(x)
        assert out.shape == ref.shape
        assert 0 < relative_error(out, ref) < 4 * fp8_rounding_error(x)


def test_scopes_take_the_layers_they_name():
    prepared, _ = generate(lowbit="fp8-static")
    notes = prepared.notes["lowbit"]
    assert notes["linears_fp8"] > 0 and notes["conv1x1_fp8"] > 0 and notes["conv_fp8"] > 0
    assert notes["unet_bytes_memory"] < notes["unet_bytes_before"] / 3  # fp32 -> fp8 weights
    unet = prepared.pipe.unet
    assert isinstance(unet.conv_in, nn.Conv2d) and isinstance(unet.conv_out, nn.Conv2d)  # 4 latent channels
    assert not any(isinstance(m, fp8static.StaticFp8Gemm) for n, m in unet.named_modules() if "time_emb" in n)
    linear_only, _ = generate(lowbit="fp8-static-linear")
    assert linear_only.notes["lowbit"]["conv1x1_fp8"] == linear_only.notes["lowbit"]["conv_fp8"] == 0


def test_static_fp8_generation_stays_close_to_float():
    _, reference = generate()
    _, quantised = generate(lowbit="fp8-static", lowbit_smoothquant=0.8)
    assert torch.isfinite(quantised).all()
    assert 0 < relative_error(quantised, reference) < 0.25


def test_smoothquant_needs_a_static_scheme():
    with pytest.raises(ValueError, match="static fp8"):
        lowbit.apply(None, lowbit.LowBitConfig(lowbit="int8-dynamic", lowbit_smoothquant=0.5))


KERNEL_CHECK = """
import torch
from sdsqueeze.accel import fp8conv
torch.manual_seed(0)
for stride in (1, 2):
    x = torch.randn(2, 9, 7, 48).to(fp8conv.FP8)
    w = torch.randn(40, 3 * 3 * 48).to(fp8conv.FP8)
    ws, sa, b = torch.rand(40) * 0.01 + 1e-3, torch.tensor([0.05]), torch.randn(40)
    out = fp8conv.launch(x, w, ws, sa, b, 3, stride, 1, torch.float32,
                         config=dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=16))
    ref = fp8conv.conv_reference(x, w, ws, sa, b, 3, stride, 1, torch.float32)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert (out - ref).abs().max() < 1e-4 * ref.abs().max(), (out - ref).abs().max()
print("kernel ok")
"""


def test_triton_kernel_matches_reference_in_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": str(Path(fp8conv.__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", KERNEL_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kernel ok" in done.stdout




@pytest.mark.parametrize("name,label", [
    ("triton_per_fused_add_clone_convolution_div_native_group_norm_silu_1", "norm"),  # names its consumer
    ("sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc", "conv"),
    ("_implicit_gemm_conv_body", "conv"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7", "attention"),
    ("nvjet_sm90_qqtst_128x160_128x5_2x1_v_bz_coopA_algo2_TNT", "gemm"),
    ("triton_poi_fused__scaled_mm__to_copy_add_clamp_gelu_mul_split_0", "quantize"),
    ("triton_poi_fused_gelu_mul_split_view_16", "elementwise"),
    ("void at::native::elementwise_kernel<128, 4>", "elementwise"),
])
def test_kernel_classes(name, label):
    from sdsqueeze.accel.measure import kernel_class

    assert kernel_class(name) == label


def test_class_rates_move_pointwise_convs_to_gemm_work():
    from sdsqueeze.accel.measure import class_rates

    flops = {"unet_step_flops_by_class": {"convolution": 10e12, "convolution_1x1": 2e12, "linear": 4e12,
                                          "attention": 1e12},
             "vae_decode_flops_by_class": {"convolution": 5e12}, "text_encoder_flops_by_class": {"linear": 1e12}}
    kernel_ms = {"conv": 1000.0, "gemm": 500.0, "attention": 100.0, "norm": 50.0}
    as_conv = class_rates(kernel_ms, flops, steps=2, pointwise_as_gemm=False)
    as_gemm = class_rates(kernel_ms, flops, steps=2, pointwise_as_gemm=True)
    assert as_conv == pytest.approx({"conv": 25.0, "gemm": 18.0, "attention": 20.0})  # TFLOP/s
    assert as_gemm == pytest.approx({"conv": 21.0, "gemm": 26.0, "attention": 20.0})
