"""The report in a real headless Chromium: no console errors, a screenshot. Skipped, with the
reason, when no Chromium is installed (Debian: apt-get install -y chromium)."""

import importlib.util
from pathlib import Path

import pytest
from report_fixtures import default_config, write_report_inputs

from sdsqueeze.report import build_report

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "browser_check.py"
spec = importlib.util.spec_from_file_location("browser_check", SCRIPT)
browser_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(browser_check)


@pytest.mark.skipif(browser_check.find_chromium() is None,
                    reason="chromium not on PATH (Debian: apt-get install -y chromium)")
def test_report_renders_without_console_errors(tmp_path):
    config = default_config()
    inputs = write_report_inputs(tmp_path / "in", config)
    html = tmp_path / "out" / "index.html"
    build_report(inputs, config, html, commands=["snakemake --cores 2"])
    messages, errors = browser_check.check(html, tmp_path / "shot.png", height_limit=browser_check.HEIGHT_LIMIT)
    assert errors == [], errors  # console errors, missing images, or a page over 15,000 px at 1400 px
    assert (tmp_path / "shot.png").stat().st_size > 20_000
    assert any(m.startswith("page height ") for m in messages)


@pytest.mark.skipif(browser_check.find_chromium() is None,
                    reason="chromium not on PATH (Debian: apt-get install -y chromium)")
def test_checker_catches_console_errors_and_missing_images(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="missing.png"><script>console.error("boom")</script></body></html>')
    _, errors = browser_check.check(page, tmp_path / "bad.png")
    assert any("boom" in e for e in errors) and any("missing.png" in e for e in errors)
