"""Static-scale fp8 and int8 layers on the CPU (fp8 simulated in fp32, int8 GEMMs on torch._int_mm),
and the Triton implicit-GEMM conv kernel in both formats under Triton's interpreter
(TRITON_INTERPRET=1, set by the test that runs it)."""

from __future__ import annotations

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
    layer = fp8static.StaticQuantGemm(linear.weight, linear.bias, float(x.abs().amax()), None, conv1x1=False)
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
    smoothed = fp8static.StaticQuantGemm(linear.weight, None, amax, smooth, conv1x1=False)
    plain = fp8static.StaticQuantGemm(linear.weight, None, float(x.abs().amax()), None, conv1x1=False)
    ref = linear(x)
    assert fp8static.outlier_ratio(channel_amax) > 20
    assert relative_error(smoothed(x), ref) < relative_error(plain(x), ref)


def test_conv_layers_match_float_convs():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 9, 9).to(memory_format=torch.channels_last)
    for conv in (nn.Conv2d(32, 48, 3, padding=1), nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.Conv2d(32, 48, 1)):
        amax = float(x.abs().amax())
        layer = (fp8static.StaticQuantGemm(conv.weight.flatten(1), conv.bias, amax, None, conv1x1=True)
                 if conv.kernel_size == (1, 1) else fp8static.StaticQuantConv(conv, amax))
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
    assert not any(isinstance(m, fp8static.StaticQuantGemm) for n, m in unet.named_modules() if "time_emb" in n)
    linear_only, _ = generate(lowbit="fp8-static-linear")
    assert linear_only.notes["lowbit"]["conv1x1_fp8"] == linear_only.notes["lowbit"]["conv_fp8"] == 0


def test_static_fp8_generation_stays_close_to_float():
    _, reference = generate()
    _, quantised = generate(lowbit="fp8-static", lowbit_smoothquant=0.8)
    assert torch.isfinite(quantised).all()
    assert 0 < relative_error(quantised, reference) < 0.25


def int8_rounding_error(x: torch.Tensor) -> float:
    """Relative error of one per-tensor symmetric int8 round trip of ``x``."""
    scale = x.abs().amax() / fp8conv.INT8_MAX
    return relative_error((x / scale).round() * scale, x)


def test_int8_gemm_layer_matches_linear_and_accumulates_exactly():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(3, 10, 64)
    fmt = fp8static.FORMATS["int8"]
    layer = fp8static.StaticQuantGemm(linear.weight, linear.bias, float(x.abs().amax()), None, conv1x1=False, fmt=fmt)
    assert layer.weight_q.dtype == torch.int8
    out, ref = layer(x), linear(x)
    assert out.shape == ref.shape
    assert 0 < relative_error(out, ref) < 4 * int8_rounding_error(x)
    # the float reference on the same int8 operands: the layer's only other rounding is float's
    rows_q = fp8static.quantize(x.reshape(-1, 64), layer.input_inverse_scale, fmt)
    dequantised = (rows_q.double() * layer.act_scale) @ (layer.weight_q.double() * layer.weight_scale[:, None]).t()
    expected = dequantised + layer.bias
    assert relative_error(out.reshape(-1, 48).double(), expected) < 1e-6


def test_int8_conv_layers_match_float_convs():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 9, 9).to(memory_format=torch.channels_last)
    fmt = fp8static.FORMATS["int8"]
    for conv in (nn.Conv2d(32, 48, 3, padding=1), nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.Conv2d(32, 48, 1)):
        amax = float(x.abs().amax())
        layer = (fp8static.StaticQuantGemm(conv.weight.flatten(1), conv.bias, amax, None, conv1x1=True, fmt=fmt)
                 if conv.kernel_size == (1, 1) else fp8static.StaticQuantConv(conv, amax, fmt))
        out, ref = layer(x), conv(x)
        assert out.shape == ref.shape
        assert 0 < relative_error(out, ref) < 4 * int8_rounding_error(x)


def test_int8_quantisation_rounds_and_saturates():
    fmt = fp8static.FORMATS["int8"]
    q = fp8static.quantize(torch.tensor([0.4, 0.6, -1.6, 300.0, -300.0]), torch.tensor(1.0), fmt)
    assert q.dtype == torch.int8 and q.tolist() == [0, 1, -2, 127, -127]


def test_int8_static_build_on_the_tiny_unet():
    _, reference = generate()
    prepared, quantised = generate(lowbit="int8-static", lowbit_smoothquant=0.8)
    notes = prepared.notes["lowbit"]
    assert notes["format"] == "int8"
    assert notes["linears_int8"] > 0 and notes["conv1x1_int8"] > 0 and notes["conv_int8"] > 0
    assert notes["unet_bytes_memory"] < notes["unet_bytes_before"] / 3  # fp32 -> int8 weights
    assert all(m.weight_q.dtype == torch.int8 for m in prepared.pipe.unet.modules()
               if isinstance(m, (fp8static.StaticQuantGemm, fp8static.StaticQuantConv)))
    assert torch.isfinite(quantised).all()
    error = relative_error(quantised, reference)
    print(f"int8-static (SmoothQuant 0.8) vs float on the tiny UNet: relative error {error:.4f}")
    assert 0 < error < 0.25  # sanity only; the quality verdicts come from the pipeline's report


def test_smoothquant_needs_a_static_scheme():
    with pytest.raises(ValueError, match="static fp8"):
        lowbit.apply(None, lowbit.LowBitConfig(lowbit="int8-dynamic", lowbit_smoothquant=0.5))


KERNEL_CHECK = """
import torch
from sdsqueeze.accel import fp8conv
torch.manual_seed(0)
tiles = dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32)  # 8-bit dot products need K >= 32 on the GPU
for stride in (1, 2):
    x = torch.randn(2, 9, 7, 64).to(fp8conv.FP8)
    w = torch.randn(40, 3 * 3 * 64).to(fp8conv.FP8)
    ws, sa, b = torch.rand(40) * 0.01 + 1e-3, torch.tensor([0.05]), torch.randn(40)
    out = fp8conv.launch(x, w, ws, sa, b, 3, stride, 1, torch.float32, config=tiles)
    ref = fp8conv.conv_reference(x, w, ws, sa, b, 3, stride, 1, torch.float32)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert (out - ref).abs().max() < 1e-4 * ref.abs().max(), (out - ref).abs().max()
# int8: SD's 3x3 convs (stride 1 and the stride-2 downsamplers, padding 1) and a 1x1 conv
for ksize, stride, pad in ((3, 1, 1), (3, 2, 1), (1, 1, 0)):
    x = torch.randint(-127, 128, (2, 9, 7, 64), dtype=torch.int8)
    w = torch.randint(-127, 128, (40, ksize * ksize * 64), dtype=torch.int8)
    ones, one = torch.ones(40), torch.ones(1)
    # unit scales, no bias: the int32 sums themselves (< 2^24, so exact in fp32 on both sides)
    out = fp8conv.launch(x, w, ones, one, None, ksize, stride, pad, torch.float32, config=tiles)
    ref = fp8conv.conv_reference(x, w, ones, one, None, ksize, stride, pad, torch.float32)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert torch.equal(out, ref), (out - ref).abs().max()
    # the epilogue: act scale x per-channel weight scale + bias, rounded to fp16 like the UNet's output
    ws, sa, b = torch.rand(40) * 0.01 + 1e-3, torch.tensor([0.02]), torch.randn(40)
    out = fp8conv.launch(x, w, ws, sa, b, ksize, stride, pad, torch.float16, config=tiles).float()
    ref = fp8conv.conv_reference(x, w, ws, sa, b, ksize, stride, pad, torch.float32)
    assert (out - ref).abs().max() <= 2e-3 * ref.abs().max(), (out - ref).abs().max()
print("kernel ok")
"""


def test_triton_kernel_matches_reference_in_interpreter(triton_interpreter):
    assert "kernel ok" in triton_interpreter(KERNEL_CHECK)




@pytest.mark.parametrize("name,label", [
    ("triton_per_fused_add_clone_convolution_div_native_group_norm_silu_1", "norm"),  # names its consumer
    ("_chunk_moments_kernel", "norm"),  # accel/groupnorm's statistics, then Inductor's steps after it
    ("_group_scale_shift_kernel", "norm"),
    ("_geglu_kernel", "gemm"),
    ("triton_per_fused__to_copy_add_mean_permute_pow_sub_var_mean_view_1", "norm"),
    ("triton_poi_fused__to_copy_add_mean_mul_permute_pow_rsqrt_silu_sub_view_2", "norm"),
    ("sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc", "conv"),
    ("_implicit_gemm_conv_body", "conv"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7", "attention"),
    ("nvjet_sm90_qqtst_128x160_128x5_2x1_v_bz_coopA_algo2_TNT", "gemm"),
    ("triton_poi_fused__scaled_mm__to_copy_add_clamp_gelu_mul_split_0", "quantize"),
    ("triton_poi_fused_gelu_mul_split_view_16", "elementwise"),
    ("triton_poi_fused__to_copy_clamp_mul_round_3", "quantize"),  # an int8 activation quantisation
    ("triton_tem_fused__int_mm_mul_7", "gemm"),  # Inductor's int8 GEMM template with the scale fused
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


def test_gpu_benchmark_plans_the_int8_builds_beside_the_baselines():
    """The lowbit-int8 group times the int8 builds in one run with fp16 SDPA, the best 16-bit build
    and the all-layer fp8 build, each resolved to a static int8 scheme, and profiles two of them."""
    from sdbench.run import GROUPS, PROFILED, parse, planned

    names = [name for name, _ in planned(parse(["--groups", "lowbit-int8", "--out", "unused"]))]
    assert names[:3] == ["fp16-sdpa", "fp16-compiled-host", "fp16-fp8static-compiled"]
    int8_builds = {n: GROUPS["lowbit-int8"][n] for n in names if "int8static" in n}
    assert {spec["lowbit"] for spec in int8_builds.values()} == {"int8-static", "int8-static-linear", "int8-static-gemm"}
    for spec in int8_builds.values():
        lowbit.check_supported(spec["lowbit"], torch.device("cpu"), torch.float16)
    assert {("fp16-int8static-compiled", 4), ("fp16-int8static-linear-compiled", 4)} <= PROFILED


def test_lowbit_tables_judge_int8_builds_against_their_own_peak(tmp_path):
    """A run with an int8 build (the committed fp8 run's rows relabelled, its times halved):
    the findings name the fastest int8 build against the 1.15x target and its matrix classes
    are rated against the int8 peak."""
    import json
    import shutil

    import pandas as pd

    from sdbench import tables

    source = Path("benchmarks/results/gpu_run16")
    run = tmp_path / "gpu_run99"
    run.mkdir()
    meta = json.loads((source / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "int8_matmul_tops": 1500.0}))
    shutil.copy(source / "profiles.txt", run)
    rows = pd.read_csv(source / "results.csv")
    int8 = rows[rows.variant == "fp16-fp8static-compiled"].copy()
    int8["variant"], int8["lowbit"] = "fp16-int8static-compiled", "int8-static"
    for column in ("unet_ms_step_median", "s_per_image"):
        int8[column] = int8[column] / 2
    pd.concat([rows, int8]).to_csv(run / "results.csv", index=False)

    findings = tables.lowbit_findings(str(run / "results.csv"))
    best = rows[(rows.variant == "fp16-compiled-host") & (rows.batch == 4)].unet_ms_step_median.iloc[0]
    mine = int8[int8.batch == 4].unet_ms_step_median.iloc[0]
    line = next(f for f in findings if f.startswith("Fastest int8 build"))
    assert f"CFG UNet step {best / mine:.2f}x" in line and "(target 1.15x for the step: met)" in line
    assert any(f.startswith("Fastest fp8 build") for f in findings)
    assert any(f.startswith("Bound: were `fp16-int8static-compiled`'s int8 classes (conv, gemm)") for f in findings)
    classes = tables.kernel_class_table(str(run / "results.csv"))
    matrix = classes[(classes.variant == "fp16-int8static-compiled") & classes["TFLOP/s"].notna()]
    assert set(matrix[matrix["class"].isin(["conv", "gemm"])].precision) == {"int8"}
    conv = matrix[matrix["class"] == "conv"].iloc[0]
    assert conv["share of that precision's peak"] == pytest.approx(conv["TFLOP/s"] / 1500.0)


def test_untimed_builds_show_why_in_one_line(tmp_path):
    """A skipped build names the warming deadline its compile missed (from warm.log), a failed one
    its error's first line; the committed int8 runs read that way."""
    from sdbench import tables

    (tmp_path / "warm.log").write_text("job0 [lowbit-int8:fp16-compiled-host,lowbit-int8:fp16-int8static-compiled]: "
                                       "stopped at the 105 s deadline, 105 s\njob1 [lowbit-int8:fp16-sdpa]: ok, 40 s\n")
    warm = tables.warm_outcomes(str(tmp_path / "results.csv"))
    assert warm == {"fp16-compiled-host": "stopped at the 105 s deadline",
                    "fp16-int8static-compiled": "stopped at the 105 s deadline", "fp16-sdpa": "ok"}
    assert tables.not_timed("skipped: time budget", warm["fp16-int8static-compiled"]) == \
        "not timed: time budget (compile unfinished at the 105 s warming deadline)"
    assert tables.not_timed("skipped: time budget", None) == "not timed: time budget"
    assert tables.not_timed("error: CompilationError: at 33:14:\n    w_rows = ...", None) == \
        "not timed: CompilationError at 33:14"
    status = tables.lowbit_table("benchmarks/results/gpu_run18/results.csv").set_index("variant").status
    assert status["fp16-int8static-compiled"].endswith("(compile unfinished at the 105 s warming deadline)")
    assert status.drop(["fp16-int8static-compiled", "fp16-int8static-gemm-compiled"]).isna().all()


def test_unet_conv_shapes_add_up_to_the_runs_flop_count():
    """The meta-device trace's 3x3 convs carry exactly the UNet's conv FLOPs torch's counter recorded
    in the run (all convolutions minus the 1x1 ones), at the benchmark's batch 8."""
    import json

    from sdbench.convbench import SHAPES, conv_flops, unet_conv_shapes

    shapes = unet_conv_shapes()
    counted = json.loads(Path("benchmarks/results/gpu_run18/meta.json").read_text())["flops"][0]["unet_step_flops_by_class"]
    assert sum(conv_flops(*shape) * n for shape, n in shapes.items()) == counted["convolution"] - counted["convolution_1x1"]
    assert set(SHAPES) <= set(shapes)  # every benchmarked shape runs in the UNet


def test_int8_conv_findings_weight_shapes_by_their_flops():
    """The FLOP-weighted rate is total ops over total time of the measured shapes, each shape's ops
    times its count per UNet call; the ranges are the per-shape extremes of the CSV."""
    import json

    import pandas as pd

    from sdbench import tables
    from sdbench.convbench import conv_flops, unet_conv_shapes

    run = "benchmarks/results/gpu_run18/results.csv"
    conv = pd.read_csv(Path(run).with_name("conv_rates.csv"))
    peak = json.loads(Path(run).with_name("meta.json").read_text())["int8_matmul_tops"]
    ops = [conv_flops(r.hw, r.cin, r.cout, r.stride) * unet_conv_shapes()[(r.hw, r.cin, r.cout, r.stride)]
           for r in conv.itertuples()]
    weighted = sum(ops) / sum(o / rate for o, rate in zip(ops, conv.triton_int8_tops))
    line = next(f for f in tables.int8_conv_findings(run) if f.startswith("3x3 convs alone"))
    share = conv.triton_int8_tops / peak
    assert f"reaches {share.min():.0%}-{share.max():.0%} of the int8 peak measured in this run ({peak:.0f} TOPS)" in line
    assert f"{weighted:.0f} TOPS, {weighted / peak:.0%} of the peak" in line
    table = tables.int8_conv_table(run)
    assert table["int8 / cuDNN fp16"].tolist() == pytest.approx((conv.triton_int8_tops / conv.cudnn_fp16_tflops).tolist())
    assert any(f.startswith("Bound from this run's profile") and "1.15x target" in f for f in tables.int8_conv_findings(run))
