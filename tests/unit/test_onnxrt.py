"""The UNet on ONNX Runtime: export names and paths, the config check, the export (checked against
PyTorch), onnxruntime's int8 copies and the wrapper the pipeline calls."""

import copy
from pathlib import Path

import pytest
import yaml

from sdsqueeze import config as sq_config
from sdsqueeze.accel import onnx_plan, onnxrt

REPO = Path(__file__).resolve().parents[2]
CALIBRATION = {"samples": 16, "cali_n": 4, "cali_st": 5}


@pytest.mark.parametrize("spec, name", [
    ({"height": 128, "width": 96}, "unet-128x96-fp32"),
    ({"height": 128, "width": 128, "onnx_int8": "dynamic"}, "unet-128x128-int8-dynamic"),
    ({"height": 64, "width": 64, "onnx_int8": "static", "onnx_calibration": "raw_data"},
     "unet-64x64-int8-static-raw_data-n16"),
    ({"height": 64, "width": 64, "onnx_int8": "static"}, "unet-64x64-int8-static-timestep_aware-n4-st5"),
])
def test_export_names_round_trip_to_the_rule_inputs(spec, name):
    assert onnx_plan.export_name(spec, CALIBRATION) == name
    parsed = onnx_plan.parse_name(name)
    assert (parsed["height"], parsed["width"]) == (spec["height"], spec["width"])
    inputs = onnx_plan.export_inputs(name, "tiny")
    assert ("fp32" in inputs) == (spec.get("onnx_int8", "none") != "none")
    if spec.get("onnx_int8") == "static":
        assert inputs["fp32"] == f"resources/onnx/tiny/unet-{spec['height']}x{spec['width']}-fp32"
        assert inputs["calibration"] == f"results/calibration/tiny/{name.split('int8-static-')[1]}.safetensors"


@pytest.fixture
def onnx_config():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    overlay = yaml.safe_load((REPO / "config" / "onnx.yaml").read_text())
    cfg["variants"].update(overlay["variants"])
    return cfg


def test_the_onnx_overlay_is_valid_and_plans_one_export_per_precision(onnx_config):
    cfg = sq_config.validate(copy.deepcopy(onnx_config))
    assert onnx_plan.all_exports(cfg, "tiny") == [
        "resources/onnx/tiny/unet-128x128-fp32", "resources/onnx/tiny/unet-128x128-int8-dynamic",
        "resources/onnx/tiny/unet-128x128-int8-static-timestep_aware-n4-st5"]


@pytest.mark.parametrize("variant, message", [
    ({"runtime": "onnxruntime", "ptq": {"weight_bits": 8, "act_bits": 8}}, r"cannot apply ptq"),
    ({"runtime": "onnxruntime", "deepcache": 3}, r"cannot apply deepcache"),
    ({"runtime": "onnxruntime", "dtype": "bfloat16"}, r"set dtype: float32 \(it is bfloat16\)"),
])
def test_a_torch_only_setting_on_onnxruntime_is_one_message(onnx_config, variant, message):
    onnx_config["variants"]["bad"] = variant
    with pytest.raises(sq_config.ConfigError, match=message):
        sq_config.validate(onnx_config)


def test_missing_onnxruntime_stops_at_config_check(onnx_config, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(sq_config.ConfigError, match=r"onnxruntime is not installed; `pip install onnx onnxruntime"):
        sq_config.validate(onnx_config)


def _small_unet():
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4).eval()


def test_an_unexportable_unet_is_one_message_naming_both_exporters(tmp_path, monkeypatch):
    def fail(module, args, path, opset, dynamo, external):
        raise RuntimeError("unsupported operator aten::made_up" if dynamo else "TorchScript cannot trace it")

    monkeypatch.setattr(onnxrt, "_run_exporter", fail)
    with pytest.raises(onnxrt.OnnxUnavailable, match=r"could not be exported to ONNX \(dynamo: RuntimeError: "
                       r"unsupported operator aten::made_up; torchscript: RuntimeError: TorchScript"):
        onnxrt.export_unet(_small_unet(), tmp_path / "unet.onnx", 8, 8)


@pytest.mark.slow  # two exports and two quantizations: ~30 s of CPU
def test_export_matches_pytorch_and_int8_copies_run_in_the_pipeline_wrapper(tmp_path):
    import numpy as np
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    unet = _small_unet()
    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    record = onnxrt.export_unet(unet, fp32 / onnxrt.MODEL_FILE, 8, 8)
    assert record["exporter"] == "dynamo" and record["check"]["max_abs_diff"] < 1e-4
    calibration = {"sample": torch.randn(8, 4, 8, 8), "timestep": torch.linspace(10, 990, 8),
                   "cond": torch.randn(8, 77, 16), "uncond": torch.randn(8, 77, 16)}
    save_file(calibration, str(tmp_path / "calibration.safetensors"))
    sample, timestep, text = onnxrt.example_inputs(unet, 8, 8, batch=4, seed=3)
    with torch.inference_mode():
        expected = unet(sample, timestep, text).sample
    for mode in ("dynamic", "static"):
        folder = tmp_path / mode
        folder.mkdir()
        notes = onnxrt.quantize(fp32 / onnxrt.MODEL_FILE, folder / onnxrt.MODEL_FILE, mode,
                                str(tmp_path / "calibration.safetensors"))
        assert notes["mode"] == mode
        assert onnxrt.file_bytes(folder) < onnxrt.file_bytes(fp32)
        ort_session, providers = onnxrt.session(folder / onnxrt.MODEL_FILE, threads=1)
        assert providers[-1] == "CPUExecutionProvider"
        wrapped = onnxrt.ort_unet(ort_session, unet)
        # the pipeline passes a scalar timestep and reads .sample; int8 stays near the fp32 output
        got = wrapped(sample, timestep[0], encoder_hidden_states=text).sample
        assert got.shape == expected.shape and got.dtype == torch.float32
        error = float((got - expected).abs().mean() / expected.abs().mean())
        assert 0 < error < 0.2, (mode, error)
    assert np.isfinite(record["check"]["max_abs_output"])


def test_report_table_reads_exports_timing_and_verdicts(onnx_config):
    import pandas as pd

    from sdsqueeze.report.onnx import onnx_table

    cfg = sq_config.validate(copy.deepcopy(onnx_config))
    records = {"unet-128x128-fp32": {"precision": "fp32", "file_bytes": 8 * 2**20, "seconds": 30.0},
               "unet-128x128-int8-dynamic": {"precision": "int8-dynamic", "file_bytes": 2 * 2**20, "seconds": 4.0}}
    timing = pd.DataFrame({"variant": ["fp32-classic", "ort-fp32", "ort-int8-dynamic"],
                           "seconds_per_image_median": [1.0, 0.5, 2.0], "cpu_seconds_per_image_median": [1.0, 0.4, 1.5]})
    differences = pd.DataFrame({"variant": ["ort-fp32", "ort-int8-dynamic"], "metric": ["psnr", "psnr"],
                                "difference": [80.0, 20.0], "ci_low": [75.0, 18.0], "ci_high": [85.0, 22.0],
                                "verdict": ["equivalent", "worse"]})
    table = onnx_table(cfg, records, timing, differences).set_index("variant")
    assert list(table.index) == ["ort-fp32", "ort-int8-dynamic", "ort-int8-static"]
    assert table.loc["ort-fp32", "file MB"] == 8 and table.loc["ort-int8-dynamic", "file MB"] == 2
    assert table.loc["ort-int8-dynamic", "time vs fp32-classic"] == 2.0
    assert table.loc["ort-int8-dynamic", "CPU time vs fp32-classic"] == 1.5
    assert table.loc["ort-fp32", "psnr verdict"] == "equivalent" and table.loc["ort-int8-dynamic", "psnr verdict"] == "worse"
    assert table.loc["ort-int8-static", "UNet on onnxruntime"] == "—"  # no export record: shown as missing
