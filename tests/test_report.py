"""The report page: the seeds' tables, unavailable metrics with reasons, plots, commands, config."""

import re

import pytest
from report_fixtures import WEIGHTS_MISSING, default_config, write_report_inputs

from sdsqueeze.report import build_report
from sdsqueeze.report.sections import efficiency, pareto_front


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    config = default_config()
    inputs = write_report_inputs(root / "in", config)
    out = root / "out" / "index.html"
    figures = build_report(inputs, config, out, commands=["snakemake --cores 2"])
    return out.read_text(), figures, config


def test_every_section_and_metric_appears(page):
    text, figures, _ = page
    for title in ("Techniques", "Quality with intervals", "FID and Inception Score",
                  "Pareto: speed and memory vs quality", "Quality vs steps", "Image grid", "Commands and config"):
        assert f">{title}</h2>" in text, title
    for label in ("speedup", "memory reduction", "FID vs reference", "CLIP score", "LPIPS", "SSIM", "IS", "FID vs COCO"):
        assert label in text, label
    assert {f.name for f in figures} >= {"variants.png", "steps.png", "image_grid.png"}
    assert all(f.is_file() and f.stat().st_size > 1000 for f in figures)


def test_unavailable_metrics_show_their_reason_never_zero(page):
    text, _, _ = page
    assert WEIGHTS_MISSING.replace("&", "&amp;") in text
    assert "alexnet-owt-7be5be79.pth" in text
    assert re.search(r"unavailable \[\d\]", text)
    assert "Unavailable here" in text  # the summary at the top names them


def test_glance_verdicts_commands_and_escaping(page):
    text, _, config = page
    assert "<ul class='glance'>" in text and "Fastest:" in text
    assert "not distinguishable from the reference" in text  # fp32-sdpa is bit-identical here
    assert "snakemake --cores 2" in text and "reference: fp32-classic" in text
    assert "prompt &lt;1&gt; &amp; co" in text


def test_efficiency_and_pareto_front():
    import pandas as pd

    timing = pd.DataFrame({"variant": ["ref", "a", "b"], "seconds_per_image_median": [2.0, 1.0, 0.5],
                           "peak_memory_mb": [100.0, 50.0, 100.0]})
    eff = efficiency(timing, "ref").set_index("variant")
    assert eff.loc["b", "speedup"] == 4.0 and eff.loc["a", "memory_reduction"] == 0.5
    points = pd.DataFrame({"variant": ["ref", "a", "b", "c"], "seconds": [2.0, 1.0, 0.5, 1.5],
                           "value": [0.0, 0.1, 0.3, 0.2]})
    front = pareto_front(points, "seconds", higher=False)  # lower LPIPS is better
    assert list(front.variant) == ["b", "a", "ref"]


def test_tiny_differences_stay_visible():
    from sdsqueeze.report.sections import _fmt_interval

    assert _fmt_interval(-3.7e-08, -5.4e-08, -2.2e-08, 4) == "-3.70e-08 [-5.40e-08, -2.20e-08]"
    assert _fmt_interval(0.5, 0.25, 0.75, 2) == "0.50 [0.25, 0.75]"
