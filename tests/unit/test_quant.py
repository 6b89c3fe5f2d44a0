"""Simulated post-training quantization and calibration sets, on the tiny model at 64 px."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GENERATION = {"dtype": "float32", "attention": "classic", "scheduler": "pndm", "steps": 4,
              "guidance": 7.5, "height": 64, "width": 64, "batch_size": 2}


def spec_with(ptq: dict | None, name: str = "q") -> dict:
    spec = {"name": name, **GENERATION}
    if ptq is not None:
        spec["ptq"] = ptq
    return spec


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from sdsqueeze.models import TinySpec, save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipeline", TinySpec(image_size=64))


def load(model_dir):
    from sdsqueeze.models import load_pipeline

    return load_pipeline(str(model_dir))


@pytest.fixture(scope="module")
def calibration_files(model_dir, tmp_path_factory) -> dict[str, Path]:
    """One small set of each kind, built from the full-precision model."""
    from sdsqueeze.quant import calibration

    out = tmp_path_factory.mktemp("calibration")
    pipe = load(model_dir)
    files = {}
    for kind in calibration.KINDS:
        settings = calibration.CalibrationSettings(kind=kind, samples=4, cali_n=2, cali_st=2, seed=1)
        tensors = calibration.build(pipe, settings, ["a red bus on a street"] * settings.n_prompts, GENERATION)
        files[kind] = out / f"{kind}.safetensors"
        calibration.save(tensors, files[kind], {"kind": kind})
    return files


def quantized(model_dir, **ptq):
    from sdsqueeze.variants import prepare

    ptq.setdefault("search_grid", 6)  # a coarser range search than the default 20 keeps tests fast
    pipe = load(model_dir)
    prepared = prepare(pipe, spec_with(ptq))
    return pipe, prepared


@pytest.fixture(scope="module")
def quantize(model_dir, calibration_files):
    """quantize(weight_bits, act_bits, calibration) -> (pipe, prepared), each built once per module."""
    cache = {}

    def build(weight_bits: int, act_bits: int, calibration: str = "none"):
        key = (weight_bits, act_bits, calibration)
        if key not in cache:
            options = {"weight_bits": weight_bits, "act_bits": act_bits, "calibration": calibration}
            if calibration != "none":
                options["calibration_file"] = str(calibration_files[calibration])
                options["ranges"] = "mse"
            cache[key] = quantized(model_dir, **options)
        return cache[key]

    return build


def test_calibration_samples_carry_what_the_guided_unet_needs(calibration_files):
    from sdsqueeze.quant import calibration

    for kind, path in calibration_files.items():
        tensors = calibration.load(path)
        n = tensors["sample"].shape[0]
        assert tensors["sample"].shape[1:] == (4, 8, 8), kind
        assert tensors["timestep"].shape == (n,)
        assert tensors["cond"].shape == tensors["uncond"].shape == (n, 77, 64)
        assert not torch.equal(tensors["cond"], tensors["uncond"]), kind  # prompt vs empty prompt
        assert torch.isfinite(tensors["sample"]).all()
    # timestep-aware: 2 trajectories, every 2nd of PNDM's 5 UNet calls (4 steps) -> 3 steps x 2
    trajectory = calibration.load(calibration_files["timestep_aware"])
    assert trajectory["sample"].shape[0] == 6
    assert len(set(trajectory["timestep"].tolist())) == 3


def test_calibration_sets_are_deterministic(model_dir, calibration_files):
    from sdsqueeze.quant import calibration

    settings = calibration.CalibrationSettings(kind="raw_data", samples=4, seed=1)
    again = calibration.build(load(model_dir), settings, ["a red bus on a street"] * 4, GENERATION)
    first = calibration.load(calibration_files["raw_data"])
    for key in calibration.TENSORS:
        assert torch.equal(first[key], again[key]), key


def test_calibration_prompts_avoid_the_evaluation_images(repo_captions):
    from sdsqueeze.prompts import load_coco_captions, select_prompts
    from sdsqueeze.quant.calibration import calibration_prompts

    coco = load_coco_captions(repo_captions)
    evaluation = select_prompts(coco, n=8, seed=42)
    chosen = calibration_prompts(coco, evaluation, n=60, seed=42, min_words=5)
    assert len(chosen) == 60
    evaluation_captions = {c.strip().rstrip(".") for c in evaluation.caption}
    assert not evaluation_captions & set(chosen)


@pytest.fixture(scope="module")
def repo_captions() -> Path:
    return Path(__file__).resolve().parents[2] / "data" / "coco_tiny_captions.json"


@pytest.mark.parametrize("bits,calibration", [(4, "none"), (4, "timestep_aware"), (8, "timestep_aware")])
def test_weights_take_at_most_2_to_the_b_levels_per_output_channel(quantize, bits, calibration):
    from sdsqueeze.quant import ptq

    pipe, _ = quantize(bits, 8, calibration)
    spec = ptq.PTQSpec(weight_bits=bits, act_bits=8, calibration=calibration)
    checked = 0
    for name, module in ptq.quant_layers(pipe.unet):
        layer_bits, _ = ptq.layer_bits(name, spec)
        rows = module.weight.detach().reshape(module.weight.shape[0], -1)
        levels = max(len(torch.unique(row)) for row in rows)
        assert levels <= 2**layer_bits, (name, levels)
        checked += 1
    assert checked > 100
    if bits == 4:  # the 4-bit layers really are at 16 levels, not below by accident
        conv = pipe.unet.down_blocks[0].resnets[0].conv1.weight.detach()
        assert max(len(torch.unique(r)) for r in conv.reshape(conv.shape[0], -1)) == 16


def test_split_shortcut_quantizes_each_half_of_the_skip_concatenation(model_dir):
    from sdsqueeze.quant import ptq

    pipe, prepared = quantized(model_dir, weight_bits=4, act_bits=8, split_shortcut=True)
    splits = ptq.shortcut_splits(pipe.unet)
    assert prepared.notes["ptq"]["split_layers"] == len(splits) > 0
    ranges = ptq.activation_ranges(pipe.unet)
    for name, split in splits.items():
        assert len(ranges[name]) == 2
        weight = dict(pipe.unet.named_modules())[name].weight.detach()
        for part in (weight[:, :split], weight[:, split:]):
            rows = part.reshape(part.shape[0], -1)
            assert max(len(torch.unique(r)) for r in rows) <= 16


def test_calibration_changes_the_activation_ranges(quantize):
    from sdsqueeze.quant import ptq

    naive = ptq.activation_ranges(quantize(8, 8)[0].unet)
    for kind in ("raw_data", "noise_data", "timestep_aware"):
        pipe, prepared = quantize(8, 8, kind)
        calibrated = ptq.activation_ranges(pipe.unet)
        assert calibrated.keys() == naive.keys()
        changed = sum(calibrated[name] != naive[name] for name in naive)
        assert changed >= 0.9 * len(naive), (kind, changed, len(naive))
        assert prepared.notes["ptq"]["range_method"] == "mse"
        assert calibrated["conv_in"] != naive["conv_in"]  # conv_in reads x_t itself


def test_quantized_pipeline_stays_close_and_w8a8_beats_w4a8(model_dir, quantize):
    """Fake quantization perturbs the output; more bits (and calibration) perturb it less."""
    from sdsqueeze.seeding import initial_latents

    def final_latents(pipe):
        latents = initial_latents([3, 4], (4, 8, 8))
        with torch.inference_mode():
            out = pipe(prompt=["a cat on a sofa", "two dogs"], latents=latents, num_inference_steps=4,
                       height=64, width=64, output_type="latent")
        return out.images

    reference = final_latents(load(model_dir))
    error8 = (final_latents(quantize(8, 8, "timestep_aware")[0]) - reference).pow(2).mean()
    error4 = (final_latents(quantize(4, 8)[0]) - reference).pow(2).mean()
    assert 0 < error8 < error4


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cached_model_on_disk_and_in_memory_reference_are_never_modified(model_dir, calibration_files,
                                                                         tmp_path):
    from sdsqueeze.generate import generate_shard

    before = file_hashes(model_dir)
    pipe = load(model_dir)
    originals = {n: p for n, p in pipe.unet.named_parameters()}  # the very tensors loaded
    copies = {n: p.detach().clone() for n, p in originals.items()}
    prompts = pd.DataFrame({"prompt_id": [1], "prompt": ["a small boat"], "seed": [5]})
    spec = spec_with({"weight_bits": 4, "act_bits": 8, "calibration": "noise_data", "search_grid": 4,
                      "calibration_file": str(calibration_files["noise_data"])})
    generate_shard(pipe, spec, prompts, tmp_path / "shard", device="cpu", progress=False)

    assert file_hashes(model_dir) == before
    for name, tensor in originals.items():  # quantization built new tensors, never wrote in place
        assert torch.equal(tensor.detach(), copies[name]), name
    quantized_weight = pipe.unet.down_blocks[0].resnets[0].conv1.weight
    assert not torch.equal(quantized_weight, copies["down_blocks.0.resnets.0.conv1.weight"])
    fresh = load(model_dir)  # and a later load is the full-precision model
    for name, tensor in fresh.unet.named_parameters():
        assert torch.equal(tensor, copies[name]), name


def test_calibrated_variant_without_its_file_is_a_clear_error(model_dir):
    with pytest.raises(ValueError, match="calibration file"):
        quantized(model_dir, weight_bits=8, act_bits=8, calibration="raw_data")


def test_sizes_account_bits_and_scales(model_dir):
    from sdsqueeze.quant import ptq

    unet = ptq.empty_unet(str(model_dir))
    assert next(unet.parameters()).is_meta
    specs = [spec_with(None, "fp32"), spec_with({"weight_bits": 8, "act_bits": 8}, "w8"),
             spec_with({"weight_bits": 4, "act_bits": 8, "calibration": "raw_data"}, "w4")]
    table = ptq.size_table(unet, specs, "fp32").set_index("variant")
    total = sum(p.numel() for p in unet.parameters())
    assert table.loc["fp32", "bytes"] == 4 * total
    assert table.loc["w4", "bytes"] < table.loc["w8", "bytes"] < table.loc["fp32", "bytes"]
    assert table.loc["w8", "quantized_params"] + table.loc["w8", "other_params"] == total
    # exact accounting for the 4-bit variant: b-bit weights, 32-bit scale + b-bit zero point
    spec = ptq.PTQSpec(weight_bits=4, act_bits=8)
    expected_bits = 0
    for name, module in ptq.quant_layers(unet):
        bits, _ = ptq.layer_bits(name, spec)
        expected_bits += module.weight.numel() * bits + module.weight.shape[0] * (32 + bits)
    other = total - table.loc["w4", "quantized_params"]
    assert table.loc["w4", "bytes"] == pytest.approx(expected_bits / 8 + 4 * other)
    assert table.loc["w4", "ratio_to_reference"] < 0.2


def test_quant_table_shows_every_row_in_the_seed_layout():
    from sdsqueeze.report.quant import quant_table

    variants = {"ref": {}, "w4a8-nocal": {"ptq": {"weight_bits": 4, "act_bits": 8}},
                "w8a8-t": {"ptq": {"weight_bits": 8, "act_bits": 8, "calibration": "timestep_aware"}},
                "w8a8-nocal": {"ptq": {"weight_bits": 8, "act_bits": 8, "calibration": "none"}},
                "dpm": {"scheduler": "dpm++"}}
    summary = pd.DataFrame([
        {"variant": v, "metric": m, "mean": x, "ci_low": x - 1, "ci_high": x + 1}
        for v, x in (("w4a8-nocal", 20.0), ("w8a8-t", 35.0), ("w8a8-nocal", 30.0), ("dpm", 25.0))
        for m in ("psnr", "ssim", "lpips")])
    sizes = pd.DataFrame([
        {"variant": "ref", "weight_bits": 32, "act_bits": 32, "mb": 10.0, "ratio_to_reference": 1.0},
        {"variant": "w4a8-nocal", "weight_bits": 4, "act_bits": 8, "mb": 1.5, "ratio_to_reference": 0.15},
        {"variant": "w8a8-t", "weight_bits": 8, "act_bits": 8, "mb": 2.6, "ratio_to_reference": 0.26},
        {"variant": "w8a8-nocal", "weight_bits": 8, "act_bits": 8, "mb": 2.6, "ratio_to_reference": 0.26}])
    table = quant_table(variants, "ref", summary, sizes)
    assert list(table.variant) == ["ref", "w8a8-nocal", "w8a8-t", "w4a8-nocal"]
    assert list(table.Calib) == ["Baseline", "W/O", "W (timestep-aware)", "W/O"]
    assert list(table["Bits (W/A)"]) == ["W32A32", "W8A8", "W8A8", "W4A8"]
    assert {"PSNR", "SSIM", "LPIPS"} <= set(table.columns)
    assert table.set_index("variant").loc["w8a8-t", "PSNR"].startswith("35.00")


def test_schema_rejects_a_misspelt_ptq_key():
    import copy

    import yaml

    from sdsqueeze import config as sq_config

    repo = Path(__file__).resolve().parents[2]
    default = yaml.safe_load((repo / "config.yaml").read_text())
    bad = copy.deepcopy(default)
    bad["variants"]["w8a8-nocal"]["ptq"]["weight_bit"] = 8
    with pytest.raises(sq_config.ConfigError, match="weight_bit"):
        sq_config.check(bad)
    bad = copy.deepcopy(default)
    bad["variants"]["w8a8-nocal"]["ptq"]["calibration"] = "coco"
    with pytest.raises(sq_config.ConfigError, match="timestep_aware"):
        sq_config.check(bad)


def default_config() -> dict:
    import yaml

    from sdsqueeze import config as sq_config

    repo = Path(__file__).resolve().parents[2]
    return sq_config.validate(yaml.safe_load((repo / "config.yaml").read_text()))


def test_calibration_set_and_state_are_inputs_only_when_the_variant_uses_them():
    from sdsqueeze.quant import workflow
    from sdsqueeze.variants import resolve_variant

    config = default_config()
    assert workflow.calibration_inputs(config, "w8a8-nocal", "tiny") == []
    assert workflow.calibration_inputs(config, "fp32-classic", "tiny") == []
    timestep = workflow.calibration_set_inputs(config, "w4a8-timestep-mse", "tiny")
    assert timestep == ["results/calibration/tiny/timestep_aware-n4-st5.safetensors"]
    assert timestep == workflow.calibration_set_inputs(config, "w8a8-timestep-adaround", "tiny")  # shared
    assert len(workflow.all_calibration_files(config, "tiny")) == 3
    assert workflow.calibration_inputs(config, "w8a8-raw", "tiny") == ["results/quant/tiny/state/w8a8-raw.safetensors"]
    spec = workflow.with_calibration_set(config, resolve_variant(config, "w8a8-raw"), "tiny")
    assert spec["ptq"]["calibration_file"] == "results/calibration/tiny/raw_data-n16.safetensors"
    spec = workflow.with_calibration(config, resolve_variant(config, "w8a8-raw"), "tiny")
    assert spec["ptq"]["state_file"] == "results/quant/tiny/state/w8a8-raw.safetensors"
    assert "calibration_file" not in config["variants"]["w8a8-raw"]["ptq"]  # config left as it was


def test_stored_state_restores_a_bit_identical_variant(model_dir, calibration_files, tmp_path):
    from sdsqueeze.quant import ptq
    from sdsqueeze.seeding import initial_latents

    options = {"weight_bits": 4, "act_bits": 8, "calibration": "timestep_aware", "ranges": "mse",
               "split_shortcut": True, "quant_attention": True, "search_grid": 4,
               "calibration_file": str(calibration_files["timestep_aware"])}
    computed, prepared = quantized(model_dir, **options)
    ptq.save_state(computed.unet, tmp_path / "state.safetensors", prepared.notes["ptq"])
    restored, again = quantized(model_dir, **options, state_file=str(tmp_path / "state.safetensors"))
    assert again.notes["ptq"]["attention_quantizers"] == prepared.notes["ptq"]["attention_quantizers"] > 0
    images = []
    for pipe in (computed, restored):
        with torch.inference_mode():
            images.append(pipe(prompt=["a dog"], latents=initial_latents([2], (4, 8, 8)), num_inference_steps=2,
                               height=64, width=64, output_type="latent").images)
    assert torch.equal(images[0], images[1])


def test_default_grid_separates_every_axis():
    from sdsqueeze.report.quant import ptq_axes

    axes = ptq_axes(default_config()["variants"])
    grid = {(r.bits, r.calibration, r.ranges, r.reconstruction, r.quant_attention, r.split_shortcut)
            for r in axes.itertuples()}
    for bits in ("W8A8", "W4A8"):
        assert (bits, "none", "minmax", "none", False, False) in grid
        assert (bits, "timestep_aware", "minmax", "none", False, False) in grid
        assert (bits, "timestep_aware", "mse", "none", False, False) in grid
        assert (bits, "timestep_aware", "mse", "adaround", False, False) in grid
    assert ("W4A8", "timestep_aware", "mse", "adaround", True, False) in grid
    assert ("W4A8", "timestep_aware", "mse", "adaround", False, True) in grid
    assert {r[1] for r in grid if r[0] == "W8A8"} == {"none", "raw_data", "noise_data", "timestep_aware"}


def test_sd15_ptq_config_holds_the_seeds_full_grid():
    import yaml

    from sdsqueeze import config as sq_config
    from sdsqueeze.report.quant import ptq_axes

    repo = Path(__file__).resolve().parents[2]
    config = sq_config.validate(yaml.safe_load((repo / "config" / "sd15-ptq.yaml").read_text()))
    axes = ptq_axes(config["variants"])
    for bits in ("W8A8", "W4A8"):
        for kind in ("raw_data", "noise_data", "timestep_aware"):
            methods = set(axes[(axes.bits == bits) & (axes.calibration == kind)].reconstruction)
            assert {"none", "adaround"} <= methods, (bits, kind)
        assert "none" in set(axes[axes.bits == bits].calibration)


def test_quant_section_is_absent_without_ptq_variants(tmp_path):
    from sdsqueeze.report.page import ReportContext
    from sdsqueeze.report.quant import quant_section

    summary = tmp_path / "summary.csv"
    summary.write_text("variant,metric,mean,ci_low,ci_high\n")
    config = {"variants": {"ref": {}, "dpm": {"scheduler": "dpm++"}}, "reference": "ref"}
    ctx = ReportContext(inputs={"summary": [str(summary)], "quant_sizes": []}, config=config, out_dir=tmp_path)
    assert quant_section(ctx) is None


# --- the W/O baseline ------------------------------------------------------------------------------

CROSS_ATTENTION_OUT = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0"


def input_width(unet, layer: str, call) -> float:
    """max - min of ``layer``'s input on the first UNet call ``call()`` makes."""
    seen = []
    module = dict(unet.named_modules())[layer]
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].aminmax()))
    try:
        with torch.inference_mode():
            call()
    finally:
        handle.remove()
    low, high = seen[0]
    return float(high - low)


def test_without_calibration_ranges_come_from_real_text_embeddings(model_dir):
    """The W/O batch's cross-attention output range is a real guided call's, not Gaussian text's."""
    from sdsqueeze.quant import ptq
    from sdsqueeze.seeding import initial_latents

    pipe = load(model_dir)
    sample, timestep, text = ptq.naive_batch(pipe, ptq.PTQSpec(weight_bits=8, act_bits=8), 64, 64, 4)
    unet = pipe.unet
    without = input_width(unet, CROSS_ATTENTION_OUT, lambda: unet(sample, timestep, encoder_hidden_states=text))
    real = input_width(unet, CROSS_ATTENTION_OUT, lambda: pipe(
        prompt=["a cat sitting on a red sofa", "two boats on a lake"], latents=initial_latents([11, 12], (4, 8, 8)),
        num_inference_steps=4, height=64, width=64, output_type="latent"))
    gaussian_text = torch.randn(text.shape, generator=torch.Generator().manual_seed(0))
    gaussian = input_width(unet, CROSS_ATTENTION_OUT,
                           lambda: unet(sample, timestep, encoder_hidden_states=gaussian_text))
    assert abs(without - real) <= 0.1 * real, (without, real)
    assert without > 2 * gaussian, (without, gaussian)
    # and the W/O variant's quantizer holds exactly that batch's min-max
    quantized_pipe, prepared = quantized(model_dir, weight_bits=8, act_bits=8)
    low, high = ptq.activation_ranges(quantized_pipe.unet)[CROSS_ATTENTION_OUT][0]
    assert prepared.notes["ptq"]["range_method"] == "minmax"
    assert high - low == pytest.approx(without, rel=0.1)


def test_without_calibration_batch_is_guided_and_its_caption_is_no_prompt(repo_captions):
    import json

    from sdsqueeze.quant import ptq

    captions = json.loads(repo_captions.read_text())["annotations"]
    assert ptq.NAIVE_PROMPT.lower() not in {a["caption"].strip().rstrip(".").lower() for a in captions}


# --- reconstruction ----------------------------------------------------------------------------------

def unit_data(model_dir, calibration_files, unit: str):
    """A fresh pipeline, its 4-bit min-max quantizers and ``unit``'s captured calibration data."""
    from sdsqueeze.quant import calibration, ptq, reconstruction

    pipe = load(model_dir)
    spec = ptq.PTQSpec(weight_bits=4, act_bits=8, calibration="timestep_aware")
    quantizers = ptq.weight_quantizers(pipe.unet, spec, {})
    batches = list(ptq.calibration_batches(calibration.load(calibration_files["timestep_aware"]), 8))
    module = dict(pipe.unet.named_modules())[unit]
    data = reconstruction.capture(pipe.unet, {unit: module}, batches)[unit]
    return pipe, module, quantizers, data


def unit_error(module, weights: dict, data) -> float:
    from torch.func import functional_call

    from sdsqueeze.quant.reconstruction import output_error

    with torch.no_grad():
        out = functional_call(module, weights, data.args, data.kwargs)
        return float(output_error(out[0] if isinstance(out, tuple) else out, data.output))


SETTINGS = {"iterations": 300, "lr": 1e-2, "batch_size": 8, "weight": 0.01}


def test_adaround_beats_round_to_nearest_on_a_unet_layer_and_ends_hard(model_dir, calibration_files):
    from sdsqueeze.quant import ptq, reconstruction

    layer = "down_blocks.0.resnets.0.conv1"
    _, module, quantizers, data = unit_data(model_dir, calibration_files, layer)
    bits, scale, zero = quantizers[layer]
    nearest = ptq.round_to_nearest(module.weight.detach(), scale, zero, bits)
    rounding = reconstruction.LearnedRounding(module.weight, scale, zero, bits)
    settings = reconstruction.ReconstructionSettings(**SETTINGS)
    learned = reconstruction.learn_rounding(module, {"weight": rounding}, data, settings)["weight"]

    assert unit_error(module, {"weight": learned}, data) < unit_error(module, {"weight": nearest}, data)
    offsets = torch.round(learned / scale + zero) - zero - rounding.floor  # the final h(V), per weight
    inside = ((rounding.floor + zero) >= 0) & ((rounding.floor + zero) < 2**bits - 1)  # not clamped
    assert set(offsets[inside].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(learned, nearest)  # it learned something other than nearest rounding
    soft = rounding.rounding()  # the regularizer drove the soft rounding to its ends
    assert ((soft < 0.01) | (soft > 0.99)).float().mean() > 0.9


def test_brecq_beats_round_to_nearest_on_a_unet_block(model_dir, calibration_files):
    from sdsqueeze.quant import ptq, reconstruction

    block = "down_blocks.0.resnets.0"
    pipe, module, quantizers, data = unit_data(model_dir, calibration_files, block)
    units = reconstruction.reconstruction_units(pipe.unet, list(quantizers), "brecq")
    layers = units[block]
    assert len(layers) >= 2  # conv1, conv2 (and the time embedding projection) learned together
    modules = dict(pipe.unet.named_modules())
    nearest, roundings = {}, {}
    for layer in layers:
        bits, scale, zero = quantizers[layer]
        name = reconstruction.relative_weight(block, layer)
        nearest[name] = ptq.round_to_nearest(modules[layer].weight.detach(), scale, zero, bits)
        roundings[name] = reconstruction.LearnedRounding(modules[layer].weight, scale, zero, bits)
    learned = reconstruction.learn_rounding(module, roundings, data,
                                            reconstruction.ReconstructionSettings(**SETTINGS))
    assert unit_error(module, learned, data) < unit_error(module, nearest, data)
    for rounding in roundings.values():
        assert set(rounding.rounding(hard=True).unique().tolist()) <= {0.0, 1.0}


def test_reconstruction_variant_runs_end_to_end_and_is_deterministic(model_dir, calibration_files):
    options = {"weight_bits": 4, "act_bits": 8, "calibration": "timestep_aware", "ranges": "mse",
               "reconstruction": "adaround", "recon_iterations": 3, "recon_batch_size": 4,
               "calibration_file": str(calibration_files["timestep_aware"])}
    first, _ = quantized(model_dir, **options)
    second, prepared = quantized(model_dir, **options)
    assert prepared.notes["ptq"]["reconstruction"] == "adaround"
    for (name, a), (_, b) in zip(first.unet.named_parameters(), second.unet.named_parameters()):
        assert torch.equal(a, b), name


def test_reconstruction_units_group_layers_by_block(model_dir):
    from sdsqueeze.quant import ptq, reconstruction

    unet = load(model_dir).unet
    layers = [name for name, _ in ptq.quant_layers(unet)]
    adaround = reconstruction.reconstruction_units(unet, layers, "adaround")
    brecq = reconstruction.reconstruction_units(unet, layers, "brecq")
    assert all(unit == members[0] and len(members) == 1 for unit, members in adaround.items())
    assert sorted(sum(brecq.values(), [])) == sorted(layers)
    assert "down_blocks.0.attentions.0.transformer_blocks.0" in brecq and "conv_in" in brecq


# --- attention quantization ---------------------------------------------------------------------------

def test_quant_attention_quantizes_both_matmuls_operands(model_dir, calibration_files):
    from sdsqueeze.quant.attention import QuantAttnProcessor

    options = {"weight_bits": 8, "act_bits": 8, "calibration": "timestep_aware", "ranges": "minmax",
               "calibration_file": str(calibration_files["timestep_aware"])}
    plain, _ = quantized(model_dir, **options)
    pipe, prepared = quantized(model_dir, **options, quant_attention=True)
    processors = pipe.unet.attn_processors
    assert processors and all(isinstance(p, QuantAttnProcessor) for p in processors.values())
    assert prepared.notes["ptq"]["attention_quantizers"] == 4 * len(processors)
    processor = next(iter(processors.values()))
    captured = []
    original = processor.quantizers["softmax"].quantize
    processor.quantizers["softmax"].quantize = lambda x: captured.append(original(x)) or captured[-1]
    from sdsqueeze.seeding import initial_latents

    outputs = []
    for p in (plain, pipe):
        with torch.inference_mode():
            outputs.append(p(prompt=["a dog"], latents=initial_latents([2], (4, 8, 8)), num_inference_steps=2,
                             height=64, width=64, output_type="latent").images)
    assert captured and len(torch.unique(captured[0])) <= 2**8  # softmax output at 8 bits
    assert not torch.equal(outputs[0], outputs[1])  # the matmul operands really are quantized


# --- config check -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("ptq,message", [
    ({"weight_bits": 4, "act_bits": 8, "reconstruction": "adaround"}, "calibration"),
    ({"weight_bits": 4, "act_bits": 8, "calibration": "none", "reconstruction": "brecq"}, "reconstruction"),
    ({"weight_bits": 9, "act_bits": 8}, "weight_bits"),
    ({"weight_bits": 4, "act_bits": 1}, "act_bits"),
    ({"weight_bits": 4, "act_bits": 8, "recon_iters": 5}, "unknown key 'variants.bad.ptq.recon_iters'"),
])
def test_bad_ptq_input_is_refused_with_one_message(ptq, message):
    import copy

    import yaml

    from sdsqueeze import config as sq_config

    repo = Path(__file__).resolve().parents[2]
    bad = copy.deepcopy(yaml.safe_load((repo / "config.yaml").read_text()))
    bad["variants"]["bad"] = {"ptq": ptq}
    with pytest.raises(sq_config.ConfigError, match=message) as error:
        sq_config.check(bad)
    assert str(error.value).count("\n") == 0 and "variants.bad.ptq" in str(error.value)


# --- report tables ------------------------------------------------------------------------------------------

def ablation_fixture():
    variants = {
        "ref": {},
        "w4-wo": {"ptq": {"weight_bits": 4, "act_bits": 8}},
        "w4-ts": {"ptq": {"weight_bits": 4, "act_bits": 8, "calibration": "timestep_aware"}},
        "w4-ts-mse": {"ptq": {"weight_bits": 4, "act_bits": 8, "calibration": "timestep_aware", "ranges": "mse"}},
        "w4-ts-ada": {"ptq": {"weight_bits": 4, "act_bits": 8, "calibration": "timestep_aware", "ranges": "mse",
                              "reconstruction": "adaround"}},
        "w4-ts-ada-attn": {"ptq": {"weight_bits": 4, "act_bits": 8, "calibration": "timestep_aware",
                                   "ranges": "mse", "reconstruction": "adaround", "quant_attention": True}},
        "w4-noise": {"ptq": {"weight_bits": 4, "act_bits": 8, "calibration": "noise_data", "ranges": "mse"}},
    }
    base = {"w4-wo": 20.0, "w4-ts": 24.0, "w4-ts-mse": 25.0, "w4-ts-ada": 27.0, "w4-ts-ada-attn": 26.0,
            "w4-noise": 22.0}
    per_image = pd.DataFrame([{"variant": v, "prompt_id": p, "psnr": x + 0.1 * p}
                              for v, x in base.items() for p in range(6)])
    return variants, per_image


def test_seed_table_has_bits_rows_and_a_column_per_calibration_kind():
    from sdsqueeze.report.quant import ptq_axes, seed_table

    variants, per_image = ablation_fixture()
    table = seed_table(ptq_axes(variants), per_image)
    assert list(table["Bits (W/A)"]) == ["W4A8"]
    assert list(table.columns) == ["Bits (W/A)", "W/O", "W (noise)", "W (timestep-aware)"]
    assert table.loc[0, "W (timestep-aware)"].endswith("(w4-ts-ada)")  # the fullest method, no extras
    assert table.loc[0, "W/O"].startswith("20.25")


def test_ablation_attributes_each_step_with_paired_intervals():
    from sdsqueeze.report.quant import ablation_table, ptq_axes

    variants, per_image = ablation_fixture()
    table = ablation_table(ptq_axes(variants), per_image, settings={"resamples": 200})
    steps = list(table.step)
    assert steps == ["+ data (timestep_aware)", "+ range search (mse)", "+ reconstruction (adaround)",
                     "W/O -> best (total)", "+ attention quantization"]
    deltas = [float(d.split(" ")[0]) for d in table["ΔPSNR"]]
    assert deltas == pytest.approx([4.0, 1.0, 2.0, 7.0, -1.0])
    # a constant paired difference has a zero-width interval: the pairing is per prompt
    assert table["ΔPSNR"].iloc[0] == "+4.00 [+4.00, +4.00]"


def test_docs_result_block_is_exactly_what_the_committed_csvs_render():
    """Every number in docs/quantization.md's generated block comes from docs/quantization/*.csv."""
    from sdsqueeze.quant import doctable

    repo = Path(__file__).resolve().parents[2]
    text = (repo / "docs" / "quantization.md").read_text()
    block = doctable.doc_block(text)
    assert block == doctable.render_block(repo / "docs" / "quantization")
    assert "W8A8" in block and "W4A8" in block and "+ attention quantization" in block
    outside = text.replace(block, "")
    assert not any(word.endswith("dB") and word[:-2].replace(".", "").isdigit() for word in outside.split())


def test_quant_section_shows_the_seed_table_the_ablation_and_every_variant(tmp_path):
    from sdsqueeze.report.page import ReportContext
    from sdsqueeze.report.quant import quant_section

    variants, per_image = ablation_fixture()
    per_image.to_csv(tmp_path / "per_image.csv", index=False)
    summary = per_image.groupby("variant").psnr.mean().rename("mean").reset_index().assign(
        metric="psnr", ci_low=np.nan, ci_high=np.nan)
    summary.to_csv(tmp_path / "summary.csv", index=False)
    pd.DataFrame([{"variant": v, "weight_bits": 4, "act_bits": 8, "mb": 1.0, "ratio_to_reference": 0.2}
                  for v in variants]).to_csv(tmp_path / "sizes.csv", index=False)
    inputs = {"summary": [str(tmp_path / "summary.csv")], "quant_sizes": [str(tmp_path / "sizes.csv")],
              "per_image": [str(tmp_path / "per_image.csv")]}
    config = {"variants": variants, "reference": "ref", "seed": 1, "metrics": {"bootstrap_resamples": 100}}
    section = quant_section(ReportContext(inputs=inputs, config=config, out_dir=tmp_path))
    assert section.body_html.count("<table") == 3
    assert "W (timestep-aware)" in section.body_html and "+ attention quantization" in section.body_html


def test_range_search_keeps_to_the_tensors_device():
    """The MSE range search ran only on CPU tensors; on CUDA its candidate ratios (made on the CPU)
    met GPU weights and activations. The meta device stands in for a GPU: mixing it with CPU
    tensors raises just as CUDA does."""
    from sdsqueeze.quant import ptq

    low, high = ptq.weight_range(torch.randn(4, 16, device="meta"), 8, search=True, grid=5)
    assert low.device.type == high.device.type == "meta"
    quantizer = ptq.ActQuantizer(bits=8, split=None, grid=5)
    quantizer.observe(torch.randn(2, 3, 4))
    seen = []
    real = ptq.candidate_errors
    ptq.candidate_errors = lambda x, lo, hi, bits: seen.append({x.device, lo.device, hi.device}) or real(x, lo, hi, bits)
    try:
        with pytest.raises(NotImplementedError):  # meta tensors cannot be copied out; the bounds were made there
            quantizer.accumulate_errors(torch.randn(2, 3, 4, device="meta"))
    finally:
        ptq.candidate_errors = real
    assert seen == [{torch.device("meta")}]


def test_doc_tables_read_the_whole_runs_jobs_and_wall_time_from_snakemakes_log(tmp_path):
    from sdsqueeze.quant import doctable

    log = tmp_path / "run.snakemake.log"
    log.write_text("Building DAG of jobs...\n80 of 81 steps (99%) done\n81 of 81 steps (100%) done\n"
                   "Complete log(s): run.snakemake.log\nElapsed time: 0:07:46.512300\n")
    assert doctable.snakemake_run_summary(log) == {"jobs": 81, "wall_seconds": 466.5}
    log.write_text("Building DAG of jobs...\n3 of 81 steps (4%) done\n")  # a run that did not finish
    with pytest.raises(ValueError, match="not the log of a finished Snakemake run"):
        doctable.snakemake_run_summary(log)
