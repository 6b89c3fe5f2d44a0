import numpy as np
import pytest

from sdsqueeze.quality import images as metrics
from sdsqueeze.quality.stats import bootstrap_mean


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
    mean, low, high = bootstrap_mean(values, 0.95, 1000, seed=3)
    assert low < mean < high
    assert bootstrap_mean(values, 0.95, 1000, seed=3) == (mean, low, high)
    assert bootstrap_mean([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    assert bootstrap_mean([float("inf"), 3.0])[0] == float("inf")
