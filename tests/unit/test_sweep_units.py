"""Operators, measured bits, grid planning and the surface fit (no diffusion model needed)."""

import zlib

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sdsqueeze.sweep import bits, fit, plan
from sdsqueeze.sweep.operator import ci_round, ci_scale, make_operator, uniform


def test_seed_operator_is_the_seeds_formula():
    x = torch.randn(4, 8, 8) * 2
    for ratio in (1.0, 0.9, 0.8, 0.75, 0.66, 0.5, 0.4, 0.33, 0.25):
        scale = round(1 / ratio, 2)
        out = ci_round(x, ratio)
        assert torch.equal(out.latent, torch.round(x * scale) / scale)
        assert torch.equal(out.codes, torch.round(x * scale).long())
    assert ci_scale(0.66) == 1.52 and ci_scale(0.33) == 3.03
    assert torch.equal(ci_round(x, 1.0).latent, torch.round(x))  # ratio 1.0: integers, the coarsest


def test_uniform_quantizer_error_and_range():
    x = torch.randn(4, 8, 8) * torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None, None]
    for per_channel in (True, False):
        out = uniform(x, 4, per_channel)
        assert out.codes.min() >= 0 and out.codes.max() <= 15
        dims = (1, 2) if per_channel else (0, 1, 2)
        step = (x.amax(dim=dims, keepdim=True) - x.amin(dim=dims, keepdim=True)) / 15
        assert torch.all((out.latent - x).abs() <= step / 2 + 1e-6)
        assert out.side_bits == (4 if per_channel else 1) * 64
    assert make_operator("uniform", "tensor").label(6) == "bits6"
    assert make_operator("ci-round").label(0.75) == "ratio0.75"


def test_bits_are_real_bytes_that_decode_and_grow_with_precision():
    latent = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(0))
    codes = ci_round(latent, 0.25).codes.numpy()
    # zlib: the bytes decompress to the codes
    raw = np.frombuffer(zlib.decompress(bits.zlib_bytes(codes)), dtype="<i2").reshape(codes.shape)
    assert np.array_equal(raw, codes)
    # ANS: constriction decodes the words back with the parameters counted in the size
    words = bits.ans_words(codes)
    params = [(low, high, mean, std) for _, low, high, mean, std in bits.channel_gaussians(codes)]
    assert np.array_equal(bits.ans_decode(words, params, codes[0].size), codes.reshape(4, -1))
    sizes = {r: bits.measure(ci_round(latent, r).codes)["bits_ans"] for r in (1.0, 0.5, 0.25)}
    assert sizes[1.0] < sizes[0.5] < sizes[0.25]
    measured = bits.measure(codes)
    assert measured["bits_ans"] >= measured["entropy_bits"]  # a real code cannot beat the entropy


def seed_config():
    from snakemake.utils import validate

    from sdsqueeze.config import load_schema

    config = yaml.safe_load(open("config.yaml"))
    config["sweep"].update(yaml.safe_load(open("config/sweep-compression-inference.yaml"))["sweep"])
    config["prompts"]["n"] = 1
    validate(config, "schemas/config.schema.yaml", set_default=True)
    assert load_schema()  # the schema parses
    return config


def test_seed_grid_plans_5400_runs_in_few_shards_and_saves_evaluations():
    grid = plan.grid_from_config(seed_config())
    assert grid.n_runs == 5400 and grid.n_shards == 25
    assert sum(len(grid.shard_items(s)) for s in range(grid.n_shards)) == 50
    for calls in (grid.num_inference_steps, grid.num_inference_steps + 1):  # plain, PNDM
        planned = plan.planned_evaluations(grid, calls)
        assert planned["naive"] == 5400 * calls
        assert planned["shared_over_naive"] <= 0.6
    assert plan.compressed_name(grid.operator, 10, 0.75, 42) == "step10_ratio0.75_seed42_compressed.png"


def test_grid_rejects_a_step_outside_the_run():
    config = seed_config()
    config["sweep"]["num_inference_steps"] = 20
    with pytest.raises(ValueError, match="sweep.steps go up to 24"):
        plan.grid_from_config(config)


def synthetic_table(true, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    s, r = np.meshgrid(np.linspace(0, 1, 12), np.linspace(0, 1, 9))
    q = fit.surface((s.ravel(), r.ravel()), *true) + noise * rng.standard_normal(s.size)
    return pd.DataFrame({"s_norm": s.ravel(), "r_norm": r.ravel(), "Q": q})


TRUE = (1.5, -8.0, 0.4, 6.0, 0.6, -0.2)  # inside Compression-Inference's bounds


def test_fit_uses_the_seeds_bounds_and_start_point():
    assert fit.BOUNDS == {"L": (0.1, 2.0), "K1": (-50.0, 50.0), "B1": (0.0, 1.0),
                          "K2": (-50.0, 50.0), "B2": (0.0, 1.0), "D": (-5.0, 5.0)}
    # Q rising with the step and falling with the ratio: exactly Compression-Inference's p0
    assert fit.start_point(synthetic_table(TRUE)) == fit.SEED_START
    # a bit-depth axis (quality rises with it): the ratio slope's start flips sign
    flipped = synthetic_table((1.5, -8.0, 0.4, -6.0, 0.6, -0.2))
    assert fit.start_point(flipped)["K2"] == -10.0


def test_fit_recovers_a_known_surface_with_errors():
    true = dict(zip(fit.PARAMS, TRUE))
    result = fit.fit_q(synthetic_table(TRUE, noise=0.01))
    assert result["r2"] > 0.99 and not result["on_bound"]
    for name, value in true.items():
        estimate = result["params"][name]
        assert abs(estimate["value"] - value) < 5 * estimate["stderr"] + 0.05 * abs(value)
    assert fit.identification(result["r2"], result["on_bound"], min_r2=0.8) == []


def test_fit_reports_a_parameter_on_its_bound(monkeypatch):
    monkeypatch.setitem(fit.BOUNDS, "K1", (-50.0, -9.0))  # the true K1 = -8 is out of reach
    result = fit.fit_q(synthetic_table(TRUE))
    assert "K1" in result["on_bound"] and result["params"]["K1"]["on_bound"]
    reasons = fit.identification(result["r2"], result["on_bound"], min_r2=0.8)
    assert len(reasons) == 1 and "K1 sits on its bound" in reasons[0]


def test_identification_flags_a_low_r2_and_a_bound_separately():
    assert fit.identification(0.95, [], 0.8) == []
    assert fit.identification(0.79, [], 0.8) == ["R² = 0.790 is below the stated threshold 0.8"]
    assert len(fit.identification(float("nan"), ["L", "D"], 0.8)) == 3


def seed_rows(seeds=(42, 43, 44), noise_seed=1):
    rng = np.random.default_rng(noise_seed)
    return [{"step": k, "level": r, "level_name": "ratio", "seed": seed,
             "psnr_gray_db": 20 + k - 8 * r + rng.normal(0, 0.3),
             "ssim_gray": 0.5 + 0.02 * k - 0.2 * r + rng.normal(0, 0.01)}
            for k in (2, 6, 10, 14) for r in (1.0, 0.5, 0.25) for seed in seeds]


def test_seed_procedure_normalises_scores_logs_and_plots(tmp_path):
    rows = seed_rows(seeds=(42, 43))
    rows[0]["psnr_gray_db"] = float("inf")  # an identical image
    runs = pd.DataFrame(rows)
    table = fit.fit_table(runs, "gray", 100.0)
    assert table.score.min() >= 0 and table.score.max() <= 1 and table.psnr_capped.sum() == 1
    assert np.allclose(table.Q, np.log(table.score + 1e-6))
    result = fit.fit_surface(runs, "gray", 100.0, resamples=20)
    assert result["n_runs"] == 24 and result["n_psnr_capped"] == 1 and 0 < result["r2"] <= 1
    assert set(result["params"]) == set(fit.PARAMS)
    paths = [tmp_path / n for n in ("res.png", "surf.png", "heat.png")]
    fit.plot_fit(runs, result, *paths)
    assert all(p.stat().st_size > 1000 for p in paths)


def test_the_min_max_zero_point_leaves_the_surface_unidentified():
    """The worst run scores 0 (Q = ln 1e-6 = -13.8), far below what Compression-Inference's L <= 2 reaches."""
    runs = pd.DataFrame(seed_rows())
    worst = runs.psnr_gray_db.idxmin()
    runs.loc[worst, "ssim_gray"] = runs.ssim_gray.min() - 0.1  # one run worst in both metrics
    result = fit.fit_surface(runs, "gray", 100.0, resamples=10)
    assert result["n_score_zero"] == 1
    assert result["identified"] is False and result["not_identified_because"]


def test_bootstrap_resamples_seeds_not_runs():
    runs = pd.DataFrame(seed_rows())
    boot = fit.bootstrap_over_seeds(runs, "gray", 100.0, resamples=30)
    assert boot["unit"] == "seed" and boot["n_seeds"] == 3 and boot["resamples"] == 30
    low, high = boot["intervals"]["D"]
    assert low <= high
    assert fit.bootstrap_over_seeds(runs, "gray", 100.0, resamples=30) == boot  # deterministic
    one_seed = fit.bootstrap_over_seeds(runs[runs.seed == 42], "gray", 100.0, resamples=30)
    assert one_seed["resamples"] == 0 and one_seed["note"] == "needs at least 2 seeds"
    drawn = fit.runs_of_seeds(runs, [42, 42, 43])
    assert len(drawn) == 3 * len(runs[runs.seed == 42])


def test_layered_compression_inference_sweep_dry_run_plans_5400_runs_in_under_200_jobs(snakemake_run):
    """`snakemake -n --configfile <model config> config/sweep-compression-inference.yaml`, offline."""
    import re
    import time

    began = time.time()
    out = snakemake_run("-n", "--nolock", "--configfile", "config/sd15.yaml", "config/sweep-compression-inference.yaml",
                        timeout=120)
    seconds = time.time() - began
    assert out.returncode == 0, out.stderr[-2000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, flags=re.M))
    assert int(counts["sweep_generate"]) == 25 and int(counts["sweep_metrics"]) == 25
    # The sweep's own jobs (the model config's generation study is planned beside them).
    assert sum(int(n) for job, n in counts.items() if job.startswith("sweep_")) < 200
    assert seconds < 30


def scheduler(name):
    import diffusers

    from sdsqueeze.models import SD15_SCHEDULER
    from sdsqueeze.variants import SCHEDULERS

    class_name, overrides = SCHEDULERS[name]
    base = diffusers.PNDMScheduler(**SD15_SCHEDULER)
    # no x0 clipping: the test is about which iteration counts as a step, not about clipping
    return getattr(diffusers, class_name).from_config(base.config, clip_sample=False, **overrides)


def sensitivity(name, loop_index, steps=10):
    """How much a latent perturbation after one loop iteration moves the final sample, with a
    denoiser whose output ignores its input (so only the latent itself can carry it)."""
    finals = []
    for perturbation in (0.0, 0.1):
        sched = scheduler(name)
        sched.set_timesteps(steps)
        x = torch.ones(1, 4, 2, 2)
        for i, t in enumerate(sched.timesteps):
            sched.scale_model_input(x, t)  # Euler tracks its step index here, as in the pipeline
            x = sched.step(torch.full_like(x, 0.3), t, x).prev_sample
            if i == loop_index:
                x = x + perturbation
        finals.append(x)
    return float((finals[1] - finals[0]).abs().mean() / 0.1)


@pytest.mark.parametrize("name", ["pndm", "ddim", "dpm++", "euler"])
def test_step_index_counts_completed_denoising_steps(name):
    from sdsqueeze.sweep.runner import warmup_calls

    sched = scheduler(name)
    sched.set_timesteps(10)
    warmup = warmup_calls(sched, 10)
    assert warmup == (1 if name == "pndm" else 0)
    for k in (0, 4, 8):  # compressing after step k reaches the image, for every scheduler
        assert sensitivity(name, k + warmup) > 0.1, f"{name}: k = {k} is discarded"


def test_pndm_warm_up_iteration_is_discarded_so_it_is_not_step_zero():
    assert sensitivity("pndm", 0) == 0.0  # PLMS redoes its first step from the unperturbed sample
    for k in range(9):  # PNDM's iteration k + 1 and DDIM's iteration k: the same point of the ODE
        assert sensitivity("pndm", k + 1) == pytest.approx(sensitivity("ddim", k), rel=1e-4)


def test_step_index_refuses_interleaved_schedulers():
    import diffusers

    from sdsqueeze.sweep.runner import warmup_calls

    heun = diffusers.HeunDiscreteScheduler.from_config(scheduler("pndm").config)
    heun.set_timesteps(10)
    with pytest.raises(ValueError, match="interleaved"):
        warmup_calls(heun, 10)
