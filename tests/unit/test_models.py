import json

import numpy as np
import pytest

from sdsqueeze import models


def test_tokenizer_matches_clip_vocabulary(tiny_pipe):
    """The rebuilt HF tokenizer gives the same ids as open_clip's real CLIP tokenizer."""
    import open_clip

    text = "A red double-decker bus parked next to a brick building."
    ours = tiny_pipe.tokenizer(text).input_ids
    theirs = open_clip.get_tokenizer("ViT-B-32")([text])[0].tolist()
    assert ours == theirs[: len(ours)]
    assert len(tiny_pipe.tokenizer) == 49408
    assert tiny_pipe.tokenizer.model_max_length == 77


def test_tiny_loads_through_from_pretrained_as_sd_pipeline(tiny_dir, tiny_pipe):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert type(tiny_pipe) is StableDiffusionPipeline
    assert isinstance(tiny_pipe.unet, UNet2DConditionModel)
    assert tiny_pipe.unet.config.cross_attention_dim == tiny_pipe.text_encoder.config.hidden_size


def test_tiny_weights_are_seeded():
    a = models.build_tiny_pipeline(models.TinySpec(seed=3, image_size=64))
    b = models.build_tiny_pipeline(models.TinySpec(seed=3, image_size=64))
    c = models.build_tiny_pipeline(models.TinySpec(seed=4, image_size=64))
    wa, wb, wc = (p.unet.conv_in.weight for p in (a, b, c))
    assert (wa == wb).all()
    assert not (wa == wc).all()


def test_missing_hub_model_fails_with_one_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelUnavailableError) as err:
        models.check_model_available("nobody/no-such-model-sdsqueeze")
    message = str(err.value)
    assert "nobody/no-such-model-sdsqueeze" in message
    assert "hf download" in message and "huggingface-cli" not in message and "model.source" in message


def test_path_without_pipeline_is_rejected(tmp_path):
    with pytest.raises(models.ModelUnavailableError, match="model_index.json"):
        models.check_model_available(str(tmp_path))


@pytest.mark.parametrize("pipeline_class", ["LDMPipeline", "DDPMPipeline", "DDIMPipeline"])
def test_unconditional_pipeline_of_another_kind_than_configured_is_refused(tmp_path, pipeline_class):
    import json

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    models.check_model_available(str(tmp_path), "unconditional")
    with pytest.raises(models.ModelUnavailableError,
                       match=rf"is a {pipeline_class} \(unconditional\), but the config runs it as text-to-image; "
                             "set model.kind: unconditional"):
        models.check_model_available(str(tmp_path), "text-to-image")


def test_prompt_free_pipeline_the_workflow_cannot_sample_is_refused(tmp_path):
    import json

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "ScoreSdeVePipeline"}))
    with pytest.raises(models.ModelUnavailableError, match="ScoreSdeVePipeline, which this workflow does not sample"):
        models.check_model_available(str(tmp_path))


def test_ddim_variant_of_the_embedded_model_does_not_clip_x0(tiny_dir):
    """SD 1.5's scheduler_config.json sets clip_sample: false; a DDIM made from the saved PNDM
    config must inherit it (clipping x0 to [-1, 1] would handicap the DDIM rows)."""
    from diffusers import DDIMScheduler, PNDMScheduler

    saved = PNDMScheduler.from_pretrained(str(tiny_dir), subfolder="scheduler")
    assert DDIMScheduler.from_config(saved.config).config.clip_sample is False


def test_sd15_architecture_has_sd15s_published_parameter_counts():
    """The seeded SD 1.5 is SD 1.5's exact architecture: the parameter counts of the published
    UNet, VAE and text encoder (built on the meta device: no memory, no time)."""
    import torch

    with torch.device("meta"):
        unet, vae, text_encoder = models.build_sd_components(models.SD15_ARCHITECTURE, 512)
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, text_encoder)]
    assert counts == [859_520_964, 83_653_863, 123_060_480]


def test_sd15_seeded_is_written_and_read_back_like_any_model(tmp_path):
    """The builder of model.source sd15-seeded, at a test size (the tiny architecture, 64 px):
    save_pretrained, then from_pretrained through load_pipeline; seeded; SD 1.x's scheduler and
    the real CLIP tokenizer; it generates."""
    import torch
    from diffusers import StableDiffusionPipeline

    small = models.TinySpec().architecture()
    paths = [models.save_sd15_seeded(tmp_path / name, seed=seed, arch=small, image_size=64)
             for name, seed in (("a", 5), ("b", 5), ("c", 6))]
    a, b, c = (models.load_pipeline(str(p)) for p in paths)
    assert type(a) is StableDiffusionPipeline
    assert torch.equal(a.unet.conv_in.weight, b.unet.conv_in.weight)
    assert not torch.equal(a.unet.conv_in.weight, c.unet.conv_in.weight)
    assert {k: a.scheduler.config[k] for k in models.SD15_SCHEDULER} == models.SD15_SCHEDULER
    assert len(a.tokenizer) == 49408
    image = a("a cat", num_inference_steps=2, height=64, width=64, output_type="np",
              generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()


def test_benchmark_harness_builds_through_the_same_builder(tmp_path):
    import torch

    from sdbench import harness
    from sdsqueeze.models import TinySpec
    bench = harness.build_pipeline("tiny", tmp_path / "tok", "cpu", torch.float32, seed=7)
    ours = models.build_seeded_pipeline(TinySpec().architecture(), TinySpec().image_size, seed=7)
    assert torch.equal(bench.unet.conv_in.weight, ours.unet.conv_in.weight)
    assert torch.equal(bench.vae.decoder.conv_out.weight, ours.vae.decoder.conv_out.weight)


def test_built_source_names_agree_with_the_config_check():
    from sdsqueeze import config

    assert config.BUILT_SOURCES == models.BUILT_SOURCES
    for good in (*models.BUILT_SOURCES, "stable-diffusion-v1-5/stable-diffusion-v1-5"):
        config.check_model_source(good)
    with pytest.raises(config.ConfigError, match="sd15_seeded.*sd15-seeded"):
        config.check_model_source("sd15_seeded")
