"""The UNet on ONNX Runtime through the real DAG (.test/onnx): the fp32 export matches the PyTorch
reference within the equivalence margin, the int8 copies are smaller and cost something, and the
report shows them; the exports are cached."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, test_config, snakemake):
    workdir = tmp_path_factory.mktemp("onnx")
    config = test_config("onnx")
    config["prompts"]["captions"] = str(REPO / config["prompts"]["captions"])
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_fp32_export_matches_pytorch_and_int8_costs_quality(run_dir):
    differences = pd.read_csv(run_dir / "results/metrics/tiny/differences.csv").set_index(["variant", "metric"])
    assert differences.loc[("ort-fp32", "psnr"), "verdict"] == "equivalent"
    assert differences.loc[("ort-fp32", "psnr"), "ci_low"] >= 40
    for int8 in ("ort-int8-dynamic", "ort-int8-static"):
        assert differences.loc[(int8, "psnr"), "difference"] < differences.loc[("ort-fp32", "psnr"), "difference"]


def test_exports_are_checked_recorded_and_int8_is_smaller(run_dir):
    exports = run_dir / "resources/onnx/tiny"
    records = {d.name: json.loads((d / "export.json").read_text())["params"] for d in exports.iterdir()}
    fp32 = records["unet-64x64-fp32"]
    assert fp32["check"]["max_abs_diff"] <= 1e-3 * max(1.0, fp32["check"]["max_abs_output"])
    for name in ("unet-64x64-int8-dynamic", "unet-64x64-int8-static-noise_data-n8"):
        assert records[name]["file_bytes"] < fp32["file_bytes"]
    provenance = json.loads((run_dir / "results/images/tiny/ort-fp32/shard-0/provenance.json").read_text())
    assert provenance["notes"]["onnxruntime"]["providers"] == ["CPUExecutionProvider"]


def test_report_shows_the_onnx_section_from_the_csvs(run_dir):
    html = (run_dir / "results/report/index.html").read_text()
    assert "ONNX Runtime" in html
    for variant in ("ort-fp32", "ort-int8-dynamic", "ort-int8-static"):
        assert f"<td>{variant}</td>" in html


def test_exports_are_cached_intermediates(run_dir, snakemake):
    result = snakemake(run_dir, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rule onnx_unet" not in result.stdout, "a rerun with nothing changed re-exported the UNet"
