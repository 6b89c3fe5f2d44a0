"""Bootstrap over prompts and paired differences against the reference."""

import numpy as np
import pandas as pd

from sdsqueeze.quality import stats


def per_image_frame(seed=0, n_prompts=12, samples=2):
    rng = np.random.default_rng(seed)
    rows = []
    for variant, clip_shift, lpips in (("ref", 0.0, 0.0), ("same", 0.0, 0.0), ("worse", -3.0, 0.3)):
        for p in range(n_prompts):
            for s in range(samples):
                base = 30 + rng.normal(0, 1)
                rows.append({"variant": variant, "prompt_id": p, "sample": s, "seed": 100 * p + s,
                             "clip_score": base + clip_shift + (rng.normal(0, 0.5) if variant == "worse" else 0),
                             "lpips": lpips + (abs(rng.normal(0, 0.05)) if lpips else 0.0),
                             "ssim": 1 - lpips, "psnr": np.inf if variant != "worse" else 20.0,
                             "lpips_status": "ok", "clip_score_status": "ok"})
    frame = pd.DataFrame(rows)
    # "same" has exactly the reference's CLIP scores (same images).
    frame.loc[frame.variant == "same", "clip_score"] = frame.loc[frame.variant == "ref", "clip_score"].to_numpy()
    return frame


def test_summary_bootstraps_over_prompts_not_images():
    frame = per_image_frame()
    summary = stats.summarize(frame, ["clip_score", "lpips"], 0.95, 500, 0).set_index(["variant", "metric"])
    row = summary.loc[("worse", "clip_score")]
    assert row.n_prompts == 12 and row.n == 24
    assert row.ci_low < row["mean"] < row.ci_high
    per_prompt_means = frame[frame.variant == "worse"].groupby("prompt_id").clip_score.mean()
    assert row["mean"] == np.float64(per_prompt_means.mean())
    assert (summary.status == "ok").all()


def test_paired_differences_judge_against_margins():
    diffs = stats.paired_differences(per_image_frame(), "ref", ["clip_score", "lpips", "ssim", "psnr"],
                                     0.95, 500, 0).set_index(["variant", "metric"])
    assert diffs.loc[("same", "clip_score")].verdict == stats.EQUIVALENT
    assert diffs.loc[("same", "lpips")].verdict == stats.EQUIVALENT
    assert diffs.loc[("same", "psnr")].verdict == stats.EQUIVALENT  # identical: capped, not infinite
    assert diffs.loc[("same", "psnr")].difference == stats.PSNR_CAP_DB
    worse = diffs.loc[("worse", "clip_score")]
    assert worse.verdict == stats.WORSE and worse.ci_high < 0 and worse.difference < -2
    assert diffs.loc[("worse", "ssim")].verdict == stats.WORSE
    assert diffs.loc[("worse", "psnr")].verdict == stats.WORSE  # 20 dB < 40 dB
    assert "ref" not in diffs.index.get_level_values("variant")


def paired_clip(shifts_by_variant, noise, n_prompts=20, seed=1):
    """Synthetic paired CLIP scores: each variant = reference + shift + noise, per prompt."""
    rng = np.random.default_rng(seed)
    base = 30 + rng.normal(0, 1, n_prompts)
    rows = [{"variant": "ref", "prompt_id": p, "sample": 0, "seed": p, "clip_score": base[p]}
            for p in range(n_prompts)]
    for variant, shift in shifts_by_variant.items():
        rows += [{"variant": variant, "prompt_id": p, "sample": 0, "seed": p,
                  "clip_score": base[p] + shift + rng.normal(0, noise)} for p in range(n_prompts)]
    return pd.DataFrame(rows)


def test_four_way_verdict_on_synthetic_paired_data():
    frame = pd.concat([
        paired_clip({"tiny-shift": 0.01, "big-drop": -2.0, "big-gain": 2.0}, noise=0.05),
        # shift at the margin, noise wide: the interval straddles -0.2
        paired_clip({"noisy": -0.2}, noise=1.0, seed=2).query("variant != 'ref'"),
    ])
    diffs = stats.paired_differences(frame, "ref", ["clip_score"], 0.95, 1000, 0,
                                     {"clip_score": 0.2}).set_index("variant")
    assert diffs.loc["tiny-shift"].verdict == stats.EQUIVALENT
    assert diffs.loc["big-drop"].verdict == stats.WORSE
    assert diffs.loc["big-gain"].verdict == stats.BETTER
    assert diffs.loc["noisy"].verdict == stats.INCONCLUSIVE
    assert (diffs.bound == 0.2).all()


def test_margin_and_threshold_rules_at_their_edges():
    assert stats.margin_verdict(-0.005, 0.005, 0.005, True) == stats.EQUIVALENT
    assert stats.margin_verdict(-0.3, -0.1, 0.005, True) == stats.WORSE
    assert stats.margin_verdict(-0.3, -0.1, 0.005, False) == stats.BETTER  # lower LPIPS is better
    assert stats.margin_verdict(-0.01, 0.001, 0.005, True) == stats.INCONCLUSIVE
    assert stats.threshold_verdict(41, 80, 40) == stats.EQUIVALENT
    assert stats.threshold_verdict(20, 39, 40) == stats.WORSE
    assert stats.threshold_verdict(35, 45, 40) == stats.INCONCLUSIVE


def test_unavailable_metric_keeps_its_row_and_reason():
    frame = per_image_frame()
    frame["lpips"] = np.nan
    frame["lpips_status"] = "unavailable: alexnet-owt-7be5be79.pth: not in weights_dir"
    summary = stats.summarize(frame, ["lpips"], 0.95, 200, 0)
    assert len(summary) == 3 and summary["mean"].isna().all()
    assert summary.status.str.startswith("unavailable: alexnet").all()
    diffs = stats.paired_differences(frame, "ref", ["lpips"], 0.95, 200, 0)
    assert len(diffs) == 2 and diffs.verdict.str.startswith("unavailable").all()
