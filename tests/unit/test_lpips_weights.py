"""The sweep's and DiffC's LPIPS resolve AlexNet like the metrics stage: metrics.weights_dir first,
never a download when metrics.download is false, and an unavailable metric says why, once."""

import logging

import numpy as np
import pytest
import torch

from sdsqueeze.diffc import runs as diffc_runs
from sdsqueeze.quality.weights import ALEXNET
from sdsqueeze.sweep import quality as sweep_quality


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Any download attempt fails the test; torch hub's cache is an empty folder."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


@pytest.fixture
def weights_dir(tmp_path):
    import torchvision

    torch.manual_seed(0)
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(torchvision.models.alexnet().state_dict(), folder / ALEXNET.filename)
    return folder


IMAGES = (np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 200, np.uint8))


def test_sweep_lpips_without_download_is_unavailable_once(no_network, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        scorer = sweep_quality.Lpips("cpu", weights_dir=str(tmp_path / "empty"), download=False)
        values = [scorer(*IMAGES) for _ in range(3)]
    assert values == [scorer.reason] * 3
    assert scorer.reason.startswith("unavailable: alexnet-owt-7be5be79.pth: not in weights_dir")
    assert "download disabled (metrics.download: false)" in scorer.reason
    assert [r.getMessage() for r in caplog.records].count("LPIPS " + scorer.reason) == 1


def test_sweep_lpips_uses_weights_dir(no_network, weights_dir):
    scorer = sweep_quality.Lpips("cpu", weights_dir=str(weights_dir), download=False)
    value = scorer(*IMAGES)
    assert isinstance(value, float) and value > 0


def test_diffc_lpips_without_download_is_unavailable(no_network, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        score, note = diffc_runs.lpips_scorer(weights_dir=None, download=False)
    assert score is None
    assert note.startswith("unavailable: alexnet-owt-7be5be79.pth: metrics.weights_dir not set")
    assert sum("LPIPS unavailable" in r.getMessage() for r in caplog.records) == 1


def test_diffc_lpips_uses_weights_dir(no_network, weights_dir):
    score, note = diffc_runs.lpips_scorer(weights_dir=str(weights_dir), download=False)
    assert note is None and score(*IMAGES) > 0


def test_rules_pass_the_weights_settings():
    from pathlib import Path

    rules = Path(__file__).resolve().parents[2] / "rules"
    for rule_file in ("sweep.smk", "diffc.smk"):
        text = (rules / rule_file).read_text()
        assert 'weights_dir=config["metrics"]["weights_dir"]' in text
        assert 'download=config["metrics"]["download"]' in text
