"""The seeds' claims: the claims file, the verdict rules on synthetic data, and the report section."""

import numpy as np
import pandas as pd
import pytest
import yaml

from sdsqueeze.report import claims as c
from sdsqueeze.report.page import ReportContext


def claim(claim_id):
    return next(x for x in c.load_claims() if x["id"] == claim_id)


def test_claims_file_covers_every_seed_with_ten_or_more_claims():
    claims = c.load_claims()
    assert len(claims) >= 10
    assert {x["seed"][:3] for x in claims} == {"000", "001", "002", "003", "004"}
    assert all(x["measure"]["kind"] in c.MEASURES for x in claims)
    optsd = {x["number"] for x in claims if x["seed"] == "004 OptSD" and x["unit"] == "x"}
    assert optsd == {1.39, 1.79, 1.19, 1.65}
    peers = {x["number"] for x in claims if "peer: NVIDIA TensorRT" in x["seed"]}
    assert peers == {1.72, 1.95}  # TensorRT's INT8 and FP8 over torch.compile fp16


def test_a_bad_claims_file_names_the_claim_and_key(tmp_path):
    data = yaml.safe_load(c.CLAIMS_PATH.read_text())
    del data["claims"][2]["measured_by"]
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"at 'claims/2': 'measured_by' is a required property"):
        c.load_claims(path)


def test_threshold_verdict_uses_the_seeds_tolerance():
    assert c.threshold_verdict(1.30, 1.39, 0.10)[0] == c.CONFIRMED   # 1.30 >= 1.251
    assert c.threshold_verdict(1.20, 1.39, 0.10)[0] == c.CONTRADICTED
    assert c.threshold_verdict(0.68, 1.39, 0.10)[0] == c.CONTRADICTED


def test_effect_trend_bound_and_fit_verdicts():
    assert c.effect_verdict(0.01, 0.05)[0] == c.CONFIRMED
    assert c.effect_verdict(-0.05, -0.01)[0] == c.CONTRADICTED
    assert c.effect_verdict(0.0, 0.0)[0] == c.CONTRADICTED  # identical: no improvement
    assert c.effect_verdict(-0.01, 0.02)[0] == c.INCONCLUSIVE
    assert c.trend_verdict(4, 0, 4, "rises")[0] == c.CONFIRMED
    assert c.trend_verdict(0, 4, 4, "rises")[0] == c.CONTRADICTED
    assert c.trend_verdict(2, 1, 4, "falls")[0] == c.INCONCLUSIVE
    assert c.bound_verdict(-0.5, "dB")[0] == c.CONFIRMED
    assert c.bound_verdict(0.19, "dB")[0] == c.CONTRADICTED
    good = {"r2": 0.95, "min_r2": 0.8, "identified": True, "not_identified_because": []}
    bound = {"r2": 0.95, "min_r2": 0.8, "identified": False, "not_identified_because": ["L on bound"]}
    poor = {"r2": 0.53, "min_r2": 0.8, "identified": False, "not_identified_because": ["R² low"]}
    assert [c.fit_verdict(f)[0] for f in (good, bound, poor)] == [c.CONFIRMED, c.INCONCLUSIVE, c.CONTRADICTED]


def gpu_csv(tmp_path, rows):
    path = tmp_path / "gpu_run1_results.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_gpu_speedup_is_taken_inside_one_run_at_the_claims_batch(tmp_path):
    rows = [{"variant": v, "batch": 4, "status": "ok", "s_per_image": s, "peak_memory_mb": m}
            for v, s, m in (("fp16-sdpa", 0.50, 4500), ("fp16-int8wo", 0.70, 4300),
                            ("fp16-int8dyn", 4.0, 4300), ("fp16-classic", 0.70, 6400))]
    rows.append({"variant": "fp16-int8wo", "batch": 1, "status": "ok", "s_per_image": 0.1,
                 "peak_memory_mb": 100})  # another batch: ignored
    evidence = c.Evidence(gpu_results=[gpu_csv(tmp_path, rows)])
    int8 = c.check_claim(claim("optsd-int8-speed"), evidence)
    assert int8["verdict"] == c.CONTRADICTED and "0.714" in int8["why"]  # 0.50 / 0.70
    flash = c.check_claim(claim("optsd-flash-speed"), evidence)
    assert flash["verdict"] == c.CONFIRMED and "1.4" in flash["why"]     # 0.70 / 0.50
    memory = c.check_claim(claim("optsd-flash-memory"), evidence)
    assert memory["verdict"] == c.CONFIRMED                               # 1 - 4500/6400 = 30%


def per_image(effect, n=8):
    base = np.random.default_rng(0).uniform(0.5, 0.7, n)
    spread = np.tile([0.01, -0.01], n // 2)  # mean zero: the paired effect is exactly `effect`
    rows = []
    for variant, values in (("w4a8-nocal", base), ("w4a8-timestep", base + effect + spread)):
        rows += [{"variant": variant, "prompt_id": p, "ssim": v} for p, v in enumerate(values)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("effect,verdict", [(0.05, c.CONFIRMED), (-0.05, c.CONTRADICTED),
                                            (0.0, c.INCONCLUSIVE)])
def test_calibration_effect_is_paired_over_prompts(effect, verdict):
    row = c.check_claim(claim("qdiff-w4a8-calibration"), c.Evidence(per_image=per_image(effect)))
    assert row["verdict"] == verdict and row["measured on"] == "this run, 8 prompts"


def sweep_runs():
    rows = []
    for step in (1, 3, 5):
        for ratio in (1.0, 0.5, 0.25):
            for seed in (42, 43):
                rows.append({"step": step, "level": ratio, "level_name": "ratio", "seed": seed,
                             "bits_ans": 2.0 - ratio, "psnr_gray_db": 20 + 3 * step - 5 * ratio})
    return pd.DataFrame(rows)


def test_sweep_trends_read_the_ratio_and_step_axes():
    evidence = c.Evidence(sweep_runs=sweep_runs())
    ratio = c.check_claim(claim("ci-ratio-precision"), evidence)
    assert ratio["verdict"] == c.CONTRADICTED and ratio["why"] == "0 of 3 groups rise, 3 fall"
    assert c.check_claim(claim("ci-later-step-better"), evidence)["verdict"] == c.CONFIRMED


def test_diffc_above_its_vae_round_trip_contradicts_the_bound():
    rows = [{"model": "tiny", "image": "a", "method": "vae", "recon_timestep": 0, "psnr": 13.40, "bpp": 0}]
    rows += [{"model": "tiny", "image": "a", "method": "diffc", "recon_timestep": t, "psnr": p, "bpp": b}
             for t, p, b in ((500, 11.0, 0.1), (300, 12.5, 0.3), (100, 13.59, 0.6))]
    evidence = c.Evidence(rd=pd.DataFrame(rows))
    bound = c.check_claim(claim("diffc-vae-bound"), evidence)
    assert bound["verdict"] == c.CONTRADICTED and "0.19 dB above" in bound["why"]
    assert c.check_claim(claim("diffc-rd-monotone"), evidence)["verdict"] == c.CONFIRMED
    figure_only = c.check_claim(claim("diffc-competitive"), evidence)
    assert figure_only["verdict"] == c.NOT_COMPARABLE and figure_only["our measurement"] != "—"


def test_absent_measurements_name_the_config_that_measures_them():
    table = c.claims_table(c.load_claims(), c.Evidence())
    assert set(table.verdict) == {c.NOT_MEASURED}
    assert table.why.str.startswith("measured by ").all()
    assert "dpm-16" in table.set_index("claim").why.filter(like="16 steps").iloc[0]


def test_section_renders_every_claim_with_a_verdict_and_reason(tmp_path):
    csv = tmp_path / "rd.csv"
    pd.DataFrame([{"model": "tiny", "image": "a", "method": "diffc", "recon_timestep": 100,
                   "psnr": 13.0, "bpp": 0.5}]).to_csv(csv, index=False)
    ctx = ReportContext(inputs={"diffc": [str(csv)]}, config={}, out_dir=tmp_path)
    section = c.claims_section(ctx)
    assert section.anchor == "claims"
    rows = section.body_html.split("<tbody>")[1].count("<tr>")
    assert rows == len(c.load_claims()) >= 10
    table = c.claims_table(c.load_claims(), c.evidence_from(ctx))
    assert table.verdict.str.len().gt(0).all() and table.why.str.len().gt(0).all()
    # the committed GPU runs measured torchao int8 slower than fp16: the section says so
    assert table.set_index("claim").filter(like="INT8 quantization speeds", axis=0).verdict.iloc[0] \
        == c.CONTRADICTED


def test_eight_bit_against_compiled_fp16_takes_the_newest_run_that_has_both(tmp_path):
    """TensorRT's FP8 figure is judged against the compiled fp16 build of the same run."""
    rows = [{"variant": v, "batch": 4, "status": "ok", "s_per_image": s, "peak_memory_mb": 2000}
            for v, s in (("fp16-compiled-host", 0.26), ("fp16-fp8static-compiled", 0.27),
                         ("fp16-fp8static-linear-compiled", 0.25))]
    evidence = c.Evidence(gpu_results=[gpu_csv(tmp_path, rows)])
    fp8 = c.check_claim(claim("tensorrt-fp8-speed"), evidence)
    assert fp8["verdict"] == c.CONTRADICTED and "1.04" in fp8["why"]  # best: 0.26 / 0.25
    int8 = c.check_claim(claim("tensorrt-int8-speed"), evidence)
    assert int8["verdict"] == c.NOT_MEASURED  # no int8 build in that run
