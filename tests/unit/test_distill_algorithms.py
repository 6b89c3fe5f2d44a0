"""Guided progressive distillation and latent consistency distillation: their pieces against
diffusers' own schedulers, and tiny end-to-end runs whose students load back and sample."""

from __future__ import annotations

import copy
import types
from pathlib import Path

import pytest
import torch

from sdsqueeze.distill import consistency, progressive
from sdsqueeze.distill.common import NoiseSchedule, ddim_step, guidance_embedding, w_conditioned_unet, x0_from_eps
from sdsqueeze.distill.teacher import TeacherData
from sdsqueeze.models import sd15_scheduler


@pytest.fixture(scope="module")
def tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, block_out_channels=(16, 32), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4, norm_num_groups=8).eval()


def random_teacher_data(n: int = 6, dim: int = 16, side: int = 8) -> TeacherData:
    g = torch.Generator().manual_seed(1)
    return TeacherData(prompt_embeds=torch.randn(n, 77, dim, generator=g),
                       negative_prompt_embeds=torch.randn(1, 77, dim, generator=g),
                       noise=torch.randn(n, 4, side, side, generator=g), latents=torch.randn(n, 4, side, side, generator=g))


def test_step_pairs_follow_ddim_and_nest_when_halving():
    from diffusers import DDIMScheduler

    config = sd15_scheduler().config
    four, eight = progressive.step_pairs(config, 4), progressive.step_pairs(config, 8)
    ddim = DDIMScheduler.from_config(progressive.sampler_config(config))
    ddim.set_timesteps(4)
    assert four[:, 0].tolist() == ddim.timesteps.tolist() == [999, 749, 499, 249]
    assert four[-1, 2] == -1  # the last step goes to DDIM's final alpha
    assert four[:, 0].tolist() == eight[::2, 0].tolist()  # the 4-step grid sits inside the 8-step one
    assert four[:, 1].tolist() == eight[1::2, 0].tolist()  # and the teacher's midpoints are its other half


def test_step_pairs_with_more_teacher_substeps_follow_the_finer_ddim_grid():
    config = sd15_scheduler().config
    four_by_four, sixteen = progressive.step_pairs(config, 4, substeps=4), progressive.step_pairs(config, 16)
    assert four_by_four.shape == (4, 5)
    assert four_by_four[:, :4].flatten().tolist() == sixteen[:, 0].tolist()  # the teacher walks the 16-step grid
    assert four_by_four[:, -1].tolist() == [749, 499, 249, -1]
    with pytest.raises(ValueError, match="teacher_substeps"):
        progressive.ProgressiveSettings(teacher_substeps=1)


def test_halving_loss_is_zero_for_any_number_of_teacher_substeps():
    """A guided epsilon constant in z and t makes one DDIM step land where any number of teacher
    steps land, so the round's loss is 0 whatever ``teacher_substeps`` is."""

    class Constant(torch.nn.Module):
        def forward(self, z, t, encoder_hidden_states, timestep_cond=None):
            return types.SimpleNamespace(sample=torch.full_like(z, 0.3) * encoder_hidden_states.mean())

    settings = progressive.ProgressiveSettings(step_schedule=(8, 4), guidance="cfg", batch_size=3, teacher_substeps=4)
    schedule = NoiseSchedule.of(sd15_scheduler().config)
    pairs = progressive.step_pairs(sd15_scheduler().config, 4, substeps=4)
    step = progressive._halving_step(Constant(), Constant(), pairs, random_teacher_data(), schedule, settings, "cpu")
    assert float(step(1, torch.Generator().manual_seed(0))) < 1e-8


def test_consistency_solver_substeps_refine_the_teachers_skip(tiny_unet):
    """One solver substep is LCM's own step; several walk the same skip in smaller DDIM steps of the
    teacher, so the consistency target (and the loss) changes."""
    data = random_teacher_data(dim=tiny_unet.config.cross_attention_dim)
    schedule = NoiseSchedule.of(sd15_scheduler().config)
    losses = {}
    for n in (1, 4):
        settings = consistency.ConsistencySettings(guidance="cfg", batch_size=2, num_ddim_timesteps=4, solver_substeps=n)
        student = progressive.guided_student(tiny_unet, settings)
        step = consistency._consistency_step(student, copy.deepcopy(student), tiny_unet, data, schedule, settings, "cpu")
        losses[n] = float(step(1, torch.Generator().manual_seed(0)))
    assert losses[1] != losses[4]
    with pytest.raises(ValueError, match="solver_substeps"):
        consistency.ConsistencySettings(solver_substeps=0)


def test_one_step_target_lands_where_the_teacher_lands():
    schedule = NoiseSchedule.of(sd15_scheduler().config)
    z, z_end = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t, t_end = torch.tensor([999, 500, 249]), torch.tensor([749, 250, -1])
    (a, s), (a2, s2) = schedule.alpha_sigma(t, z), schedule.alpha_sigma(t_end, z)
    x = progressive.one_step_target(z, z_end, a, s, a2, s2)
    eps = (z - a * x) / s
    torch.testing.assert_close(ddim_step(x0_from_eps(z, eps, a, s), eps, a2, s2), z_end, rtol=1e-4, atol=1e-4)


def test_step_schedule_must_halve():
    with pytest.raises(ValueError, match="halve"):
        progressive.ProgressiveSettings(step_schedule=(16, 6, 3))


def test_w_conditioned_student_starts_as_the_teacher(tiny_unet, tmp_path):
    from diffusers import UNet2DConditionModel

    student = w_conditioned_unet(tiny_unet, cond_dim=32)
    z, c, t = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 16), torch.tensor([10, 900])
    with torch.no_grad():
        expected = tiny_unet(z, t, encoder_hidden_states=c).sample
        got = student(z, t, encoder_hidden_states=c, timestep_cond=guidance_embedding(torch.tensor([1.0, 6.5]), 32)).sample
    torch.testing.assert_close(got, expected)
    student.save_pretrained(tmp_path / "unet")
    assert UNet2DConditionModel.from_pretrained(tmp_path / "unet").config.time_cond_proj_dim == 32


def test_lcm_pieces_match_lcm_scheduler():
    from diffusers import LCMScheduler

    settings = consistency.ConsistencySettings(num_ddim_timesteps=20)
    lcm = LCMScheduler.from_config(consistency.sampler_config(sd15_scheduler().config, settings))
    lcm.set_timesteps(20)
    assert sorted(lcm.timesteps.tolist()) == consistency.solver_grid(1000, 20).tolist()
    t = torch.tensor([0, 19, 999])
    c_skip, c_out = consistency.boundary_scalings(t, settings.timestep_scaling, torch.zeros(3, 1))
    for i, step in enumerate(t.tolist()):
        expected = lcm.get_scalings_for_boundary_condition_discrete(step)
        assert c_skip[i].item() == pytest.approx(float(expected[0])) and c_out[i].item() == pytest.approx(float(expected[1]))


def test_consistency_student_samples_with_lcm_or_deterministic_tcd():
    config = sd15_scheduler().config
    for sampler, name in (("lcm", "LCMScheduler"), ("tcd", "TCDScheduler")):
        built = consistency.sampler_config(config, consistency.ConsistencySettings(sampler=sampler, num_ddim_timesteps=20))
        assert built["_class_name"] == name and built["original_inference_steps"] == 20
    with pytest.raises(ValueError, match="sampler"):
        consistency.ConsistencySettings(sampler="euler")


def test_ema_update_moves_the_target_towards_the_student():
    target, student = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = target.weight.detach().clone()
    consistency.ema_update(target, student, decay=0.75)
    torch.testing.assert_close(target.weight, 0.75 * before + 0.25 * student.weight.detach())


@pytest.mark.parametrize("method", ["pd", "lcm"])
def test_tiny_training_runs_resumes_and_is_seeded(tiny_unet, tmp_path, method):
    torch.set_num_threads(1)
    pipe = types.SimpleNamespace(unet=tiny_unet, scheduler=sd15_scheduler())
    data = random_teacher_data()

    def run(folder):
        if method == "pd":
            settings = progressive.ProgressiveSettings(step_schedule=(4, 2), guidance_iters=3, round_iters=3,
                                                       batch_size=2, cond_dim=32, ckpt_every=2, progress=False)
            return progressive.train_guided_pd(pipe, data, settings, folder)
        settings = consistency.ConsistencySettings(iters=4, guidance_iters=2, batch_size=2, cond_dim=32,
                                                   ckpt_every=2, num_ddim_timesteps=10, progress=False)
        return consistency.train_lcm(pipe, data, settings, folder)

    student, config, report = run(tmp_path / "a")
    again, _, rerun = run(tmp_path / "a")  # every phase finds its final checkpoint: nothing is trained twice
    other, _, _ = run(tmp_path / "b")
    assert all(phase["resumed_from"] == phase["iterations"] for phase in rerun["phases"])
    for a, b, c in zip(student.state_dict().values(), again.state_dict().values(), other.state_dict().values(),
                       strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert student.config.time_cond_proj_dim == 32
    assert config["_class_name"] == ("DDIMScheduler" if method == "pd" else "LCMScheduler")
    assert [phase["phase"] for phase in report["phases"]] == (["guidance", "steps-2"] if method == "pd"
                                                               else ["guidance", "consistency"])
    assert all(phase["loss_start"] > 0 for phase in report["phases"])
    changed = any(not torch.equal(p, q) for p, q in zip(student.state_dict().values(),
                                                        w_conditioned_unet(tiny_unet, 32).state_dict().values(),
                                                        strict=True))
    assert changed


def test_students_sample_through_the_stock_pipeline(tiny_dir, tmp_path):
    """A PD and an LCM student, saved and loaded back, run in StableDiffusionPipeline with their
    schedulers, the guidance weight going in as the UNet's input instead of a second batch."""
    from diffusers import DDIMScheduler, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from sdsqueeze.distill.teacher import build_teacher_data
    from sdsqueeze.models import load_pipeline

    torch.set_num_threads(1)
    pipe = load_pipeline(str(tiny_dir))
    data = build_teacher_data(pipe, ["a red square", "a blue circle"], [1, 2], steps=2, guidance=7.5, height=64,
                              width=64, progress=False)
    pd_student, pd_config, _ = progressive.train_guided_pd(
        pipe, data, progressive.ProgressiveSettings(step_schedule=(4, 2), guidance_iters=2, round_iters=2, batch_size=2,
                                                    progress=False), tmp_path / "pd")
    lcm_student, lcm_config, _ = consistency.train_lcm(
        pipe, data, consistency.ConsistencySettings(iters=2, batch_size=2, progress=False), tmp_path / "lcm")
    for name, student, scheduler in (("pd", pd_student, DDIMScheduler.from_config(pd_config)),
                                     ("lcm", lcm_student, LCMScheduler.from_config(lcm_config))):
        student.save_pretrained(tmp_path / name / "unet")
        unet = UNet2DConditionModel.from_pretrained(tmp_path / name / "unet")
        sampler = StableDiffusionPipeline(**{**pipe.components, "unet": unet, "scheduler": scheduler})
        sampler.set_progress_bar_config(disable=True)
        calls: list[int] = []

        def count(module, args, kwargs, out, calls=calls):
            calls.append(kwargs["timestep_cond"].shape[0])

        unet.register_forward_hook(count, with_kwargs=True)
        image = sampler("a red square", num_inference_steps=2, guidance_scale=7.5, height=64, width=64,
                        generator=torch.Generator().manual_seed(0), output_type="np").images
        assert image.shape == (1, 64, 64, 3) and torch.isfinite(torch.from_numpy(image)).all()
        assert calls == [1, 1]  # two steps, one batch each: no classifier-free guidance pass


def test_smoke_table_has_one_row_per_phase():
    from sdsqueeze.distill.smoke import smoke_setup, smoke_table

    record = {"trainer": "progressive", "arch": "sd15", "size": 512, "batch_size": 2, "bf16": True,
              "gradient_checkpointing": True, "weights": "seeded (no checkpoint)", "torch": "2.x",
              "device": {"device": "cuda", "gpu": "NVIDIA H200"}, "command": "python -m sdsqueeze.distill.smoke",
              "phases": [{"phase": p, "iterations": 100, "loss_start": 2.0, "loss_end": 1.0,
                          "iterations_per_second": 5.0, "peak_memory_bytes": 3 * 2**30} for p in ("guidance", "steps-4")]}
    rows = smoke_table([record]).splitlines()
    assert len(rows) == 4 and rows[2] == "| progressive | guidance | 100 | 2 | 1 | 5.00 | 3.0 |"
    assert "NVIDIA H200" in smoke_setup([record]) and "seeded" in smoke_setup([record])


def test_h200_block_of_the_docs_is_in_step_with_its_results_file():
    import json

    import yaml

    from sdsqueeze.distill.smoke import doc_block

    repo = Path(__file__).resolve().parents[2]
    records = json.loads((repo / "docs" / "distillation" / "h200_smoke.json").read_text())["runs"]
    students = yaml.safe_load((repo / "config" / "sd15-distill.yaml").read_text())["distill"]["students"]
    text = (repo / "docs" / "distillation.md").read_text()
    begin, end = "<!-- h200-smoke:begin -->", "<!-- h200-smoke:end -->"
    block = text[text.index(begin) + len(begin) : text.index(end)].strip()
    assert block == doc_block(records, students, "config/sd15-distill.yaml")
    assert {r["trainer"] for r in records} == {"progressive", "consistency", "bksdm"}
    for record in records:  # every trainer ran at 512 px in bf16 and its loss went down
        assert record["size"] == 512 and record["bf16"]
        assert all(p["loss_end"] < p["loss_start"] for p in record["phases"])


def test_expected_gpu_hours_scale_with_iterations_and_batch():
    from sdsqueeze.distill.smoke import expected_gpu_hours

    records = [{"trainer": "bksdm", "batch_size": 4, "phases": [{"phase": "kd", "iterations_per_second": 2.0}]},
               {"trainer": "progressive", "batch_size": 4,
                "phases": [{"phase": "guidance", "iterations_per_second": 1.0},
                           {"phase": "steps-4", "iterations_per_second": 0.5}]}]
    students = {"b": {"method": "bksdm", "iterations": 7200, "batch_size": 8},
                "p": {"method": "progressive", "iterations": 360, "guidance_iterations": 3600,
                      "schedule": [16, 8, 4], "batch_size": 4}}
    hours = {row["student"]: row["gpu_hours"] for row in expected_gpu_hours(records, students)}
    assert hours["b"] == 7200 / 2.0 * 2 / 3600
    assert hours["p"] == (3600 / 1.0 + 2 * 360 / 0.5) / 3600


@pytest.mark.parametrize("method", ["pd", "lcm"])
def test_cfg_aware_students_keep_guidance_and_learn_from_the_guided_teacher(tiny_unet, tmp_path, method):
    """guidance: cfg: no guidance phase and no guidance input; the student starts as the teacher
    (its first-round loss is the teacher's own 2-step vs 1-step gap), trains, resumes and is seeded."""
    torch.set_num_threads(1)
    pipe = types.SimpleNamespace(unet=tiny_unet, scheduler=sd15_scheduler())
    data = random_teacher_data()
    teacher_weights = {k: v.clone() for k, v in tiny_unet.state_dict().items()}

    def run(folder):
        if method == "pd":
            settings = progressive.ProgressiveSettings(step_schedule=(8, 4, 2), guidance="cfg", round_iters=3,
                                                       batch_size=2, ckpt_every=2, progress=False)
            return progressive.train_guided_pd(pipe, data, settings, folder)
        settings = consistency.ConsistencySettings(iters=4, guidance="cfg", guidance_iters=5, batch_size=2,
                                                   ckpt_every=2, num_ddim_timesteps=10, progress=False)
        return consistency.train_lcm(pipe, data, settings, folder)

    student, _, report = run(tmp_path / "a")
    other, _, _ = run(tmp_path / "b")
    assert student.config.time_cond_proj_dim is None  # sampled with the pipeline's own CFG
    assert [phase["phase"] for phase in report["phases"]] == (["steps-4", "steps-2"] if method == "pd"
                                                               else ["consistency"])
    assert report["guidance"] == "cfg"
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), other.state_dict().values(), strict=True))
    assert any(not torch.equal(student.state_dict()[k], v) for k, v in teacher_weights.items())
    # the teacher is frozen, never trained
    assert all(torch.equal(tiny_unet.state_dict()[k], v) for k, v in teacher_weights.items())


def test_cfg_aware_halving_loss_is_zero_when_one_step_equals_two():
    """The CFG-aware round's target is where two guided teacher steps land: a UNet whose guided
    epsilon is constant in z and t makes one DDIM step land exactly there, so the loss is 0."""

    class Constant(torch.nn.Module):
        def forward(self, z, t, encoder_hidden_states, timestep_cond=None):
            return types.SimpleNamespace(sample=torch.full_like(z, 0.3) * encoder_hidden_states.mean())

    data = random_teacher_data()
    settings = progressive.ProgressiveSettings(step_schedule=(4, 2), guidance="cfg", batch_size=3)
    schedule = NoiseSchedule.of(sd15_scheduler().config)
    pairs = progressive.step_pairs(sd15_scheduler().config, 2)
    step = progressive._halving_step(Constant(), Constant(), pairs, data, schedule, settings, "cpu")
    assert float(step(1, torch.Generator().manual_seed(0))) < 1e-8
    with pytest.raises(ValueError, match="guidance must be"):
        progressive.ProgressiveSettings(guidance="both")
