"""Unconditional pipelines: the config check's messages, the embedded LDM (built, saved, read back
as an LDMPipeline), seeded sampling, text-free calibration and PTQ, and the LSUN table."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sdsqueeze import config as sq_config
from sdsqueeze import models, prompts, seeding, uncond

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def uncond_config():
    return yaml.safe_load((REPO / "config/uncond-smoke.yaml").read_text())


def test_the_overlay_is_valid_and_needs_no_caption_file(uncond_config):
    checked = sq_config.validate(copy.deepcopy(uncond_config))
    assert sq_config.model_kind(checked) == "unconditional"
    assert "captions" not in checked["prompts"]


PROMPT_ONLY = [
    (lambda c: c["generation"].update(guidance=7.5), r"'generation.guidance' needs a prompt \(classifier-free"),
    (lambda c: c["variants"]["fp32"].update(guidance=1.0), r"'variants.fp32.guidance' needs a prompt"),
    (lambda c: c["variants"].update(kv={"attention": "sdpa", "kv_cache": True}),
     r"'variants.kv.kv_cache' needs a prompt \(the K/V cache holds the text's cross-attention"),
    (lambda c: c["prompts"].update(captions="data/coco_tiny_captions.json"),
     r"'prompts.captions' belongs to a prompt file, which it does not read"),
    (lambda c: c["variants"].update(ort={"runtime": "onnxruntime"}),
     r"'variants.ort.runtime' is not supported for unconditional pipelines \(the ONNX export takes a text-conditioned"),
    (lambda c: c.update(sweep={"enabled": True}), r"sweep.enabled is true \(the latent sweep renders prompts\)"),
    (lambda c: c["generation"].update(height=128, width=128), r"tiny-uncond samples at its own 64x64 px"),
]


@pytest.mark.parametrize("mutate, message", PROMPT_ONLY)
def test_prompt_only_settings_are_refused_with_one_message(uncond_config, mutate, message):
    mutate(uncond_config)
    with pytest.raises(sq_config.ConfigError, match=message):
        sq_config.validate(uncond_config)


def test_kind_is_read_from_a_local_pipeline_and_can_be_forced(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    assert sq_config.model_kind({"model": {"source": str(tmp_path)}}) == "unconditional"
    assert sq_config.model_kind({"model": {"source": str(tmp_path), "kind": "text-to-image"}}) == "text-to-image"
    assert sq_config.model_kind({"model": {"source": "tiny"}}) == "text-to-image"
    assert sq_config.UNCONDITIONAL_PIPELINES == models.UNCONDITIONAL_PIPELINES


def test_text_to_image_config_still_needs_its_captions():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    del config["prompts"]["captions"]
    with pytest.raises(sq_config.ConfigError, match="'prompts' misses 'captions'"):
        sq_config.validate(config)


def test_sample_list_gives_each_id_its_prompt_seed():
    listed = prompts.sample_list(5, 41)
    assert list(listed.columns) == ["prompt_id", "seed"]
    assert listed.seed.tolist() == [seeding.prompt_seed(41, i) for i in range(5)]


@pytest.fixture(scope="module")
def ldm_dir(tmp_path_factory):
    """The embedded LDM, unfitted (the fit is the workflow's), written with save_pretrained."""
    path = tmp_path_factory.mktemp("ldm")
    return uncond.save_tiny_uncond_pipeline(path, uncond.UncondSpec(image_size=64))


SPEC = {"name": "ref", "dtype": "float32", "attention": "sdpa", "scheduler": "ddim", "steps": 4, "eta": 1.0,
        "height": 64, "width": 64, "batch_size": 2}


def prepared(ldm_dir, spec=SPEC):
    from sdsqueeze.variants import prepare

    return prepare(models.load_pipeline(str(ldm_dir)), dict(spec))


def test_embedded_ldm_is_read_back_as_an_ldm_pipeline(ldm_dir):
    index = json.loads((ldm_dir / "model_index.json").read_text())
    assert index["_class_name"] == "LDMPipeline" and index["unet"] == ["diffusers", "UNet2DModel"]
    pipe = models.load_pipeline(str(ldm_dir))
    assert uncond.is_unconditional(pipe) and uncond.native_size(pipe) == 64
    assert seeding.latent_shape(pipe, 64, 64) == (4, 8, 8)


def test_sampling_is_seeded_per_image_and_repeatable(ldm_dir):
    """eta = 1 adds noise at every step: drawn from each image's own generator, so an image does not
    depend on its batch (beyond float summation order) and a rerun is bit-identical."""
    run = prepared(ldm_dir)
    images, finals = uncond.run_unconditional(run.pipe, run.spec, [7, 8])
    again, finals_again = uncond.run_unconditional(run.pipe, run.spec, [7, 8])
    alone, final_alone = uncond.run_unconditional(run.pipe, run.spec, [8])
    assert np.array_equal(np.asarray(images[0]), np.asarray(again[0]))
    assert finals.shape == (2, 4, 8, 8) and finals.equal(finals_again)
    assert (finals[1] - final_alone[0]).abs().max() < 1e-3
    assert (finals[0] - finals[1]).abs().max() > 0.1


def test_a_size_other_than_the_models_is_refused_at_the_first_job(ldm_dir):
    with pytest.raises(ValueError, match="samples at its own 64x64 px"):
        uncond.check_size(prepared(ldm_dir).pipe, {**SPEC, "height": 128, "width": 128})


@pytest.mark.parametrize("kind", ["noise_data", "raw_data", "timestep_aware"])
def test_calibration_sets_hold_no_text_and_feed_ptq(ldm_dir, kind, tmp_path):
    from sdsqueeze.quant import calibration

    run = prepared(ldm_dir)
    settings = calibration.CalibrationSettings(kind=kind, samples=4, cali_n=2, cali_st=2)
    tensors = calibration.build(run.pipe, settings, [], SPEC)
    assert set(tensors) == {"sample", "timestep"} and tensors["sample"].shape[1:] == (4, 8, 8)
    path = tmp_path / "set.safetensors"
    calibration.save(tensors, path, {})
    spec = {**SPEC, "ptq": {"weight_bits": 4, "act_bits": 8, "calibration": kind, "ranges": "mse",
                            "reconstruction": "adaround", "recon_iterations": 2, "recon_samples": 4,
                            "recon_batch_size": 4, "calibration_file": str(path)}}
    quantized = prepared(ldm_dir, spec)
    assert quantized.notes["ptq"]["calibration_samples"] == len(tensors["sample"])
    images, _ = uncond.run_unconditional(quantized.pipe, quantized.spec, [7])
    assert np.asarray(images[0]).shape == (64, 64, 3)


def test_without_calibration_the_ranges_come_from_the_pipelines_first_call(ldm_dir):
    spec = {**SPEC, "ptq": {"weight_bits": 8, "act_bits": 8, "calibration": "none", "quant_attention": True}}
    notes = prepared(ldm_dir, spec).notes["ptq"]
    assert notes["calibration_samples"] == 2 and notes["attention_quantizers"] > 0


def test_lsun_table_has_the_seeds_layout_and_states_unavailable_once():
    from sdsqueeze.report.uncond import lsun_table

    variants = {"fp32": {}, "w8-w": {"ptq": {"weight_bits": 8, "act_bits": 8, "calibration": "noise_data"}},
                "w4-wo": {"ptq": {"weight_bits": 4, "act_bits": 8, "calibration": "none"}},
                "w8-wo": {"ptq": {"weight_bits": 8, "act_bits": 8, "calibration": "none"}}}
    summary = pd.DataFrame([{"variant": v, "metric": m, "mean": 30.0, "ci_low": 29.0, "ci_high": 31.0}
                            for v in ("w8-w", "w4-wo", "w8-wo") for m in ("psnr", "ssim")])
    differences = summary.assign(verdict="worse")
    distribution = pd.DataFrame(
        [{"variant": v, "metric": "fd_effnetlite0", "value": 5.0, "std": np.nan, "ci_low": 4.0, "ci_high": 6.0,
          "status": "ok"} for v in variants]
        + [{"variant": v, "metric": m, "value": np.nan, "std": np.nan, "ci_low": np.nan, "ci_high": np.nan,
            "status": "unavailable: no Inception weights"} for v in variants for m in ("fid_reference", "inception_score")])
    table, reasons = lsun_table(variants, "fp32", summary, differences, distribution)
    assert table[["Calib", "Bits (W/A)"]].values.tolist() == [
        ["Baseline", "W32A32"], ["W/O", "W8A8"], ["W (noise)", "W8A8"], ["W/O", "W4A8"]]
    assert reasons == ["no Inception weights"]
    assert table.loc[1, "PSNR (dB)"] == "30.00 [29.00, 31.00] — worse"
    assert table.loc[0, "FD-EffNetLite0"] == "reference" and table.loc[0, "IS"] == "unavailable"


def test_prompt_only_setting_stops_the_dry_run_with_one_message(tmp_path, uncond_config, snakemake_run):
    uncond_config["variants"]["fp32"]["kv_cache"] = True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(uncond_config))
    result = snakemake_run("-n", "--configfile", str(bad), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path))
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert output.count("'variants.fp32.kv_cache' needs a prompt") == 1
    assert not (tmp_path / "results").exists()


def test_a_text_to_image_run_of_an_unconditional_folder_stops_at_the_first_job(tmp_path, ldm_dir, snakemake_run):
    """model.kind forced to text-to-image on an LDMPipeline folder: the onstart model check says so
    before any job runs."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["model"].update(source=str(ldm_dir), kind="text-to-image", name="ldm")
    config["prompts"]["captions"] = str(REPO / config["prompts"]["captions"])
    config.update(sweep={"enabled": False}, diffc={"enabled": False})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake_run("--cores", "1", "--configfile", str(path), "-s", str(REPO / "Snakefile"), "-d",
                           str(tmp_path), "models_all")
    assert result.returncode != 0
    assert "is a LDMPipeline (unconditional), but the config runs it as text-to-image" in result.stderr
    assert not (tmp_path / "resources").exists()
