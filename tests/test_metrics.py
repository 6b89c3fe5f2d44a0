import numpy as np
import pandas as pd
import pytest

from sdsqueeze import metrics


def test_psnr_known_value_and_identity():
    ref = np.zeros((8, 8, 3), dtype=np.uint8)
    img = ref.copy()
    img[0, 0, 0] = 255  # MSE = 255^2 / 192
    assert metrics.psnr(ref, ref) == float("inf")
    assert metrics.psnr(ref, img) == pytest.approx(10 * np.log10(192), rel=1e-9)


def test_ssim_is_one_for_identical_images():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert metrics.ssim(img, img) == pytest.approx(1.0)
    assert metrics.ssim(img, 255 - img) < 0.5


def test_bootstrap_interval_contains_mean_and_is_seeded():
    values = np.random.default_rng(1).normal(30, 2, 50)
    mean, low, high = metrics.bootstrap_mean(values, 0.95, 1000, seed=3)
    assert low < mean < high
    assert metrics.bootstrap_mean(values, 0.95, 1000, seed=3) == (mean, low, high)
    assert metrics.bootstrap_mean([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    assert metrics.bootstrap_mean([float("inf"), 3.0])[0] == float("inf")


def test_summarize_long_format():
    per_image = pd.DataFrame({"variant": ["a"] * 4 + ["b"] * 4, "psnr": [30, 31, 32, 33, 20, 21, 22, 23]})
    summary = metrics.summarize(per_image, ["psnr"], 0.9, 500, 0)
    assert summary.set_index("variant").loc["a", "mean"] == pytest.approx(31.5)
    assert (summary.n == 4).all() and (summary.confidence == 0.9).all()
