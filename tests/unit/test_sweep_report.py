"""The report's sweep section, from a sweep CSV, its fit and its evaluation counts."""


import numpy as np
import pandas as pd

from sdsqueeze import io
from sdsqueeze.report.page import ReportContext
from sdsqueeze.report.sweep import sweep_section
from sdsqueeze.sweep import fit


def sweep_files(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"prompt_id": 1, "seed": seed, "operator": "ci-round", "level_name": "ratio",
             "step": k, "level": r, "file": f"p00001/step{k}_ratio{r}_seed{seed}_compressed.png",
             "bits_ans": 3 + 2 * (1 - r), "bits_zlib": 4 + 2 * (1 - r), "entropy_bits": 2.5,
             "psnr_gray_db": 20 + k - 8 * r + rng.normal(0, 0.3),
             "ssim_gray": 0.5 + 0.02 * k - 0.2 * r + rng.normal(0, 0.01),
             "psnr_rgb_db": 19 + k - 8 * r, "ssim_rgb": 0.5 + 0.02 * k - 0.2 * r,
             "lpips_alex": "unavailable: no weights here"}
            for k in (1, 3, 5, 7) for r in (1.0, 0.5, 0.25) for seed in (42, 43)]
    d = tmp_path / "sweep"
    io.write_csv(d / "sweep.csv", pd.DataFrame(rows))
    result = fit.fit_surface(pd.DataFrame(rows), resamples=20)
    io.write_json(d / "fit" / "fit.json", result)
    figures = [d / "fit" / n for n in ("residuals.png", "surface.png", "heatmap.png")]
    fit.plot_fit(pd.DataFrame(rows), result, *figures)
    io.write_json(d / "evaluations.json", {"trajectories": 2, "runs": 24, "shared": 166,
                                           "naive": 264, "shared_over_naive": 166 / 264,
                                           "evaluations_per_full_run": 11})
    return [str(d / "sweep.csv"), str(d / "evaluations.json"), str(d / "fit" / "fit.json")] + [
        str(f) for f in figures], result


def test_sweep_section_shows_formula_r2_figures_and_evaluations(tmp_path):
    files, result = sweep_files(tmp_path)
    ctx = ReportContext(inputs={"sweep": files}, config={}, out_dir=tmp_path / "report")
    ctx.out_dir.mkdir()
    section = sweep_section(ctx)
    assert section.title == "Latent-compression sweep"
    assert f"R² = <b>{result['r2']:.4f}</b>" in section.body_html
    assert "Q(s&#x27;, r&#x27;)" in section.body_html or "Q(s', r')" in section.body_html
    assert "<b>166</b> on shared trajectories vs <b>264</b> naive" in section.body_html
    assert "unavailable: no weights here" in section.body_html
    for name in ("sweep_surface.png", "sweep_heatmap.png", "sweep_residuals.png", "sweep_rate_quality.png"):
        assert (ctx.out_dir / "figures" / name).stat().st_size > 1000 and name in section.body_html


def test_sweep_section_says_why_a_surface_is_not_drawn(tmp_path):
    files, result = sweep_files(tmp_path)
    assert result["identified"] is False  # the min-max zero point is beyond the seed's L <= 2
    ctx = ReportContext(inputs={"sweep": files}, config={}, out_dir=tmp_path / "report")
    ctx.out_dir.mkdir()
    body = sweep_section(ctx).body_html
    assert "Surface not identified, so not drawn" in body
    for reason in result["not_identified_because"]:
        assert reason.replace("'", "&#x27;") in body
    assert "95% interval (bootstrap over seeds)" in body and "20 resamples of 2 seeds" in body


def test_an_identified_surface_is_stated_as_such(tmp_path):
    from sdsqueeze.report.sweep import identification_html

    fit_result = {"identified": True, "min_r2": 0.8,
                  "bootstrap": {"resamples": 200, "n_seeds": 50, "note": ""}}
    assert "Surface identified" in identification_html(fit_result)


def test_sweep_section_is_absent_without_a_sweep(tmp_path):
    assert sweep_section(ReportContext(inputs={"sweep": []}, config={}, out_dir=tmp_path)) is None
