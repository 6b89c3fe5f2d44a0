"""A run's files rebuilt from its console log (benchmarks/sdbench/fromlog.py) hold what the log printed; a
profiled generation's kernels are kept one per row (sdbench.harness.append_kernels)."""

import json

from sdbench import fromlog

LOG = """device NVIDIA H200; bf16 matmul 783 TFLOP/s
fp8 matmul 1395 TFLOP/s
int8 matmul 891 TOPS
copy 4192 GB/s, exp2 4.14 T/s
attention heads 8, queries 4096, keys 4096, head_dim 40, per_unet_call 5, us 640, fp8_sdpa NotImplementedError: no fp8
groupnorm channels 320, hw 64, groups 32, per_unet_call 13, copy_us 9, inductor_us 45.4, channels_last_us 39.7
flops: [{"batch": 4, "unet_step_flops": 6426187530240}]
[fp16-compiled-host b4] ok 0.258 s/img, 18.84 ms/step, 2251 MB, warm-up 17.6 s
[fp16-compiled-host-gn b4] ok 0.237 s/img, 17.64 ms/step, 2253 MB, warm-up 13.4 s
[fp16-compiled-host-gn b4] ok 0.237 s/img, 17.64 ms/step, 2253 MB, warm-up 13.4 s
"""


def test_log_lines_become_rates_rows_and_meta(tmp_path):
    rates, rows, meta = fromlog.parse(LOG)
    assert list(rates.kind) == ["attention", "groupnorm"]
    assert rates.loc[0, "us"] == 640.0 and rates.loc[0, "fp8_sdpa"] == "NotImplementedError: no fp8"
    assert rates.loc[1, "channels_last_us"] == 39.7
    assert list(rows.variant) == ["fp16-compiled-host", "fp16-compiled-host-gn"]  # the summary repeat dropped
    gn = rows.set_index("variant").loc["fp16-compiled-host-gn"]
    assert gn.unet_ms_step_median == 17.64 and gn.s_per_image == 0.237 and gn.status == "ok"
    assert gn.channels_last_groupnorm is True and gn.compile == "reduce-overhead"  # the build's definition
    assert meta["bf16_matmul_tflops"] == 783 and meta["int8_matmul_tops"] == 891 and meta["exp2_tera_per_s"] == 4.14
    assert meta["versions"] == {"gpu": "NVIDIA H200"} and meta["flops"][0]["unet_step_flops"] == 6426187530240

    log = tmp_path / "gpu_runX" / "bench.log"
    log.parent.mkdir()
    log.write_text(LOG)
    assert fromlog.main([str(log), "--command", "python benchmarks/gpu_benchmark.py ...", "--machine", "H200"]) == 0
    written = json.loads((log.parent / "meta.json").read_text())
    assert written["run"] == "gpu_runX" and "recovered_from" in written and written["copy_gbs"] == 4192
    assert (log.parent / "results.csv").is_file() and (log.parent / "kernel_rates.csv").is_file()


def test_profiled_kernels_are_appended_with_their_class(tmp_path):
    import pandas as pd

    from sdbench.harness import append_kernels

    append_kernels(tmp_path, "a", 4, {"_chunk_moments_kernel": (61, 1.5), "sm90_xmma_fprop_implicit_gemm_f16": (10, 7.0)})
    append_kernels(tmp_path, "b", 4, {})  # a CPU profile has no GPU kernels: nothing written
    append_kernels(tmp_path, "b", 4, {"nvjet_sm90_hsh_256x128": (3, 0.25)})
    rows = pd.read_csv(tmp_path / "kernels.csv")
    assert list(rows.variant) == ["a", "a", "b"] and list(rows["class"]) == ["norm", "conv", "gemm"]
    assert rows.loc[0, "calls"] == 61 and rows.loc[1, "ms"] == 7.0
