"""The embedded model's training (sdsqueeze.tinytrain) and its committed weights: the data it renders
is the domain's, a CPU training is deterministic whatever the caller's threads, weights round-trip
through the committed format, and the committed weights are small, hashed and really trained."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sdsqueeze import models, tinytrain
from sdsqueeze.diffc.images import load_image
from sdsqueeze.shapes.dataset import make_dataset

REPO = Path(__file__).resolve().parents[2]

# The committed weights are under-trained (docs/embedded-model.md: the GPU stage ran ~1200 UNet steps and
# ~600 VAE steps): the acceptance checks below fail on them today. Strict, so they fail CI the moment
# better weights make them pass and the marker must go.
SMALL = dict(images=16, image_size=64, vae_steps=3, vae_batch=4, unet_steps=3, unet_batch=4, warmup_steps=1)


def trained(threads=None, **overrides):
    previous = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        settings = tinytrain.TrainSettings(**{**SMALL, **overrides})
        pipe = models.build_tiny_pipeline(models.TinySpec(image_size=settings.image_size))
        return pipe, tinytrain.train_tiny_pipeline(pipe, settings)
    finally:
        torch.set_num_threads(previous)


def test_parallel_rendering_is_make_datasets_split():
    settings = tinytrain.TrainSettings(images=7, image_size=32, data_seed=5)
    images, captions = tinytrain.shapes_training_set(settings, workers=3)
    expected, _, expected_captions = make_dataset(7, 5, 32)
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), expected)
    assert captions == expected_captions


def test_cpu_training_is_bit_identical_whatever_the_callers_threads():
    (a, report), (b, _) = trained(threads=2), trained(threads=1)
    for name in tinytrain.COMPONENTS:
        for (key, wa), wb in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values()):
            assert torch.equal(wa, wb), f"{name}.{key}"
    assert report["vae"]["steps"] == 3 and report["unet"]["steps"] == 3
    assert a.vae.config.scaling_factor == b.vae.config.scaling_factor != 0.18215
    seeded = models.build_tiny_pipeline(models.TinySpec(image_size=64))
    for name in tinytrain.COMPONENTS:  # every component was trained
        assert not all(torch.equal(x, y) for x, y in zip(getattr(a, name).state_dict().values(),
                                                         getattr(seeded, name).state_dict().values())), name


def test_weights_round_trip_as_float16_and_their_hash_names_the_files(tmp_path):
    pipe, report = trained()
    record = tinytrain.save_weights(pipe, tmp_path, report)
    assert json.loads((tmp_path / tinytrain.TRAINING_RECORD).read_text())["weights_sha256"] == record["weights_sha256"]
    loaded_record: dict = {}
    loaded = models.build_tiny_pipeline(models.TinySpec(image_size=64, seed=9), tmp_path, loaded_record)
    assert loaded_record["weights_sha256"] == record["weights_sha256"]
    assert loaded.vae.config.scaling_factor == pipe.vae.config.scaling_factor
    for name in tinytrain.COMPONENTS:
        for key, value in getattr(pipe, name).state_dict().items():
            got = getattr(loaded, name).state_dict()[key]
            assert got.dtype == torch.float32 and torch.equal(got, value.half().float()), f"{name}.{key}"
    (tmp_path / "vae.safetensors").write_bytes((tmp_path / "vae.safetensors").read_bytes()[:-1] + b" ")
    assert tinytrain.weights_hash(tmp_path) != record["weights_sha256"]


def test_committed_weights_are_small_hashed_and_loaded_without_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = [models.COMMITTED_WEIGHTS / f"{name}.safetensors" for name in tinytrain.COMPONENTS]
    assert sum(f.stat().st_size for f in files) <= 20 * 2**20
    record = json.loads((models.COMMITTED_WEIGHTS / tinytrain.TRAINING_RECORD).read_text())
    assert tinytrain.weights_hash(models.COMMITTED_WEIGHTS) == record["weights_sha256"]
    loaded: dict = {}
    models.build_tiny_pipeline(models.TinySpec(), models.COMMITTED_WEIGHTS, loaded)
    assert loaded["weights_sha256"] == record["weights_sha256"]
    assert record["tiny_spec"]["unet_channels"] == list(models.TinySpec().unet_channels)


@torch.no_grad()
def psnr_of_reconstruction(pipe, name: str) -> float:
    pixels = torch.from_numpy(load_image(name, 128).astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    out = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
    mse = ((out - pixels) / 2).pow(2).mean().item()
    return 10 * np.log10(1 / mse)


def test_committed_vae_reconstructs_renders_and_unseen_photographs():
    pipe, seeded = models.trained_tiny_pipeline(), models.build_tiny_pipeline()
    assert "astronaut" not in tinytrain.FIT_PHOTOS
    for photo in ("astronaut", "coffee"):  # DiffC's test photographs, never trained on
        assert psnr_of_reconstruction(pipe, photo) > psnr_of_reconstruction(seeded, photo) + 5
    images, _, _ = make_dataset(4, 99, 128)  # a split the training never drew
    pixels = torch.from_numpy(images.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = pipe.vae.decode(pipe.vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
    assert ((out - pixels) / 2).pow(2).mean() < 0.1 * ((pixels - pixels.mean()) / 2).pow(2).mean()  # > 10 dB above the mean


def test_schema_defaults_are_the_training_settings():
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    fit = schema["properties"]["model"]["properties"]["tiny_fit"]["properties"]
    defaults = asdict(tinytrain.TrainSettings())
    assert {key: spec["default"] for key, spec in fit.items()} == {key: defaults[key] for key in fit}


@pytest.mark.parametrize("photo", tinytrain.FIT_PHOTOS)
def test_training_photographs_ship_with_scikit_image(photo):
    from skimage import data

    assert np.asarray(getattr(data, photo)()).size > 0


@pytest.mark.parametrize("command", ["training data/models/tiny", "table data/models/tiny/grid.csv",
                                     "repro docs/embedded-model/repro.csv", "runs docs/embedded-model/repro_runs.csv"])
def test_embedded_model_docs_blocks_are_generated_from_the_committed_records(command):
    from sdsqueeze import tinyeval

    doc = (REPO / "docs" / "embedded-model.md").read_text()
    begin = f"<!-- BEGIN generated: python -m sdsqueeze.tinyeval {command} -->\n"
    block = doc.split(begin, 1)[1].split("<!-- END generated -->", 1)[0]
    what, path = command.split()
    if what == "training":
        rendered = tinyeval.training_markdown(REPO / path)
    elif what == "repro":
        rendered = tinyeval.repro_markdown(pd.read_csv(REPO / path))
    elif what == "runs":
        rendered = tinyeval.runs_markdown(pd.read_csv(REPO / path))
    else:
        rendered = tinyeval.markdown(pd.read_csv(REPO / path))
    assert block.strip() == rendered.strip(), f"rerun: python -m sdsqueeze.tinyeval {command}, paste between the markers"


@pytest.fixture(scope="module")
def default_generation():
    """The committed model with the default run's guidance and steps (config.yaml)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())["generation"]
    torch.set_num_threads(1)
    pipe = models.trained_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe, config["guidance"], config["steps"]


def test_the_same_prompt_with_two_seeds_gives_two_different_images_that_both_follow_it(default_generation):
    from sdsqueeze import tinyeval
    from sdsqueeze.shapes.detect import adherence

    pipe, guidance, steps = default_generation
    prompt = "a large red circle in the centre, white background"
    images = tinyeval.generate(pipe, [prompt, prompt], [42, 43], guidance, steps)
    assert not np.array_equal(images[0], images[1])
    assert np.abs(images[0].astype(int) - images[1]).mean() > 1  # more than rounding apart
    for image in images:
        assert adherence(image, prompt)["overall"], adherence(image, prompt)


def test_two_prompts_differing_only_in_colour_give_different_detected_colours(default_generation):
    from sdsqueeze import tinyeval
    from sdsqueeze.shapes.detect import detect

    pipe, guidance, steps = default_generation
    prompts = [f"two {colour} squares on the left" for colour in ("blue", "yellow")]
    images = tinyeval.generate(pipe, prompts, [7, 7], guidance, steps)
    colours = [{obj.colour for obj in detect(image)} for image in images]
    assert colours == [{"blue"}, {"yellow"}]


def test_debiasing_removes_the_first_weights_share_from_a_plain_ema():
    """torch's AveragedModel (what the committed weights' first stage used) against debias_ema: the
    debiased average is the trajectory's own exponentially weighted mean, without the first weights."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    decay, first = 0.9, torch.tensor([5.0, -3.0])
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(first[None])
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
    ema.update_parameters(model)  # the first update copies the weights
    trajectory = [torch.tensor([float(k), 2.0 * k]) for k in range(1, 8)]
    for weights in trajectory:
        with torch.no_grad():
            model.weight.copy_(weights[None])
        ema.update_parameters(model)
    updates = len(trajectory) + 1
    debiased = tinytrain.debias_ema({"w": ema.module.weight[0]}, {"w": first}, decay, updates)["w"]
    shares = torch.tensor([(1 - decay) * decay ** (len(trajectory) - 1 - k) for k in range(len(trajectory))])
    expected = (shares[:, None] * torch.stack(trajectory)).sum(0) / shares.sum()
    assert torch.allclose(debiased, expected, atol=1e-5)


def test_a_training_writes_its_weights_so_far_after_the_vae_and_during_the_unet_phase():
    """A job killed at a time limit still leaves weights: checkpoints after the VAE phase and, every
    checkpoint_seconds, during the UNet phase (its moving average), each marked partial."""
    saved = []
    settings = tinytrain.TrainSettings(**SMALL, checkpoint_seconds=0)
    pipe = models.build_tiny_pipeline(models.TinySpec(image_size=settings.image_size))
    report = tinytrain.train_tiny_pipeline(pipe, settings, lambda partial: saved.append(partial))
    assert [s["partial"] for s in saved] == [True] * (1 + settings.unet_steps)
    assert saved[0]["unet"]["not_trained_yet"] and [s["unet"].get("steps_so_far") for s in saved[1:]] == [1, 2, 3]
    assert "partial" not in report and report["unet"]["steps"] == settings.unet_steps


def test_renders_of_two_machines_are_compared_per_setting():
    from sdsqueeze import tinyeval

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 3, 32, 32, 3), dtype=np.uint8)
    a = {"images": images, "settings": np.array([[7.5, 25], [3.0, 10]]), "prompts": np.array(["a red circle"] * 3),
         "weights_sha256": np.array("abc")}
    moved = images.copy()
    moved[1, 0, 0, 0, 0] ^= 4  # one channel of one pixel, 4 levels apart
    table = tinyeval.compare_renders(a, {**a, "images": moved})
    assert table["identical"].tolist() == [True, False] and table["max_abs_diff"].tolist() == [0, 4]
    assert np.isinf(table["psnr_db"][0]) and table["psnr_db"][1] > 60
    with pytest.raises(ValueError, match="different weights"):
        tinyeval.compare_renders(a, {**a, "weights_sha256": np.array("other")})


def test_default_guidance_and_steps_are_the_grids_best_cell():
    grid = pd.read_csv(REPO / "data" / "models" / "tiny" / "grid.csv")
    best = grid.loc[grid["overall"].idxmax()]
    config = yaml.safe_load((REPO / "config.yaml").read_text())["generation"]
    assert (config["guidance"], config["steps"]) == (best["guidance"], best["steps"])
