"""The distill stage around the trainers: config checks, the BK-SDM student, the teacher data."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from sdsqueeze import config as sq_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def default_config(monkeypatch):
    """The embedded model with its distill overlay (config/distill-embedded.yaml)."""
    import sys

    monkeypatch.chdir(REPO)
    sys.path.insert(0, str(REPO / "tests"))
    from report_fixtures import embedded_distill_config

    return copy.deepcopy(embedded_distill_config())


def _student(config, name, **spec):
    config.setdefault("distill", {"enabled": True}).setdefault("students", {})[name] = spec
    config["distill"]["enabled"] = True


BAD_DISTILL = [
    (lambda c: _student(c, "pd", method="progressive", teacher="sd99"),
     r"distill.students.pd.teacher is 'sd99', which is neither the model \('tiny'\) nor a student"),
    (lambda c: _student(c, "pd", method="progressive", schedule=[16, 8, 3]),
     r"distill.students.pd.schedule \[16, 8, 3\] does not halve: 8 -> 3"),
    (lambda c: _student(c, "bk", method="bksdm", remove=["mid_block", "pair.7"]),
     r"distill.students.bk.remove 'pair.7': the teacher's UNet has stages 0 to 2"),
    (lambda c: _student(c, "bk", method="bksdm", remove=["pair.0"]),
     r"remove 'pair.0': stage 0 has 1 residual/attention pair"),
    (lambda c: _student(c, "bk", method="bksdm", remove=["mid_block", "block.3"]),
     r"'distill.students.bk.remove.1' is 'block.3'; it must match"),
    (lambda c: c["variants"].update({"pd-4": {"student": "pd-5"}}),
     r"variants.pd-4.student is 'pd-5', which is not a student"),
    (lambda c: _student(c, "bk", method="bksdm", schedule=[8, 4]),
     r"distill.students.bk.schedule is not a key of method 'bksdm'"),
    (lambda c: _student(c, "bk", method="bksdm", guidance_mode="cfg"),
     r"distill.students.bk.guidance_mode is not a key of method 'bksdm'"),
    (lambda c: _student(c, "pd", method="progressive", guidance_mode="both"),
     r"distill.students.pd.guidance_mode"),
    (lambda c: (_student(c, "a", method="progressive", teacher="b"), _student(c, "b", method="progressive", teacher="a")),
     r"distill.students form a cycle of teachers: a -> b -> a"),
]


@pytest.mark.parametrize("mutate, message", BAD_DISTILL)
def test_bad_distill_config_is_refused_with_one_message(default_config, mutate, message):
    mutate(default_config)
    with pytest.raises(sq_config.ConfigError, match=message):
        sq_config.validate(default_config)


def test_a_student_may_learn_from_another_student(default_config):
    _student(default_config, "bk2", method="bksdm", teacher="bksdm-small", remove=["pair.0"])
    with pytest.raises(sq_config.ConfigError, match="bk2.remove 'pair.0'"):  # the first student has 1 pair left
        sq_config.validate(copy.deepcopy(default_config))
    default_config["distill"]["students"]["bk2"]["remove"] = ["innermost_stage"]
    from sdsqueeze.distill.plan import students_in_training_order

    assert students_in_training_order(sq_config.validate(default_config)).index("bk2") > \
        students_in_training_order(default_config).index("bksdm-small")


def _sd_like_unet(layers=2):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 32, 64, 64), layers_per_block=layers, cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, attention_head_dim=8, norm_num_groups=16)


def test_bksdm_small_of_an_sd_layout_keeps_teacher_weights_and_runs(tmp_path):
    """BK-SDM-Small on SD 1.x's block layout (two pairs per stage): mid-block and one pair per
    stage go; every kept tensor is the teacher's; up blocks keep their first and last pairs."""
    import torch
    from diffusers import UNet2DConditionModel

    from sdsqueeze.distill import bksdm

    teacher = _sd_like_unet()
    remove = ("mid_block", "pair.0", "pair.1", "pair.2", "pair.3")
    student = bksdm.init_student(teacher, remove)
    assert student.mid_block is None and [len(b.resnets) for b in student.up_blocks] == [2, 2, 2, 2]
    assert torch.equal(student.up_blocks[1].resnets[1].conv1.weight, teacher.up_blocks[1].resnets[2].conv1.weight)
    assert torch.equal(student.down_blocks[2].attentions[0].proj_in.weight, teacher.down_blocks[2].attentions[0].proj_in.weight)
    assert bksdm.parameter_count(student) < 0.7 * bksdm.parameter_count(teacher)
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.randn(2, 77, 32)
    assert student(x, t, encoder_hidden_states=text).sample.shape == x.shape
    student.save_pretrained(tmp_path)
    loaded = UNet2DConditionModel.from_pretrained(tmp_path)
    assert torch.equal(loaded(x, t, encoder_hidden_states=text).sample, student(x, t, encoder_hidden_states=text).sample)


def test_bksdm_default_student_of_the_embedded_model_is_30_percent_smaller():
    import torch

    from sdsqueeze.distill import bksdm
    from sdsqueeze.models import TinySpec, build_sd_components

    torch.manual_seed(0)
    teacher = build_sd_components(TinySpec().architecture(), 128)[0]
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    remove = default["distill"]["students"]["bksdm-small"]["remove"]
    student = bksdm.init_student(teacher, remove)
    assert 1 - bksdm.parameter_count(student) / bksdm.parameter_count(teacher) >= 0.30


def test_teacher_data_round_trip_and_training_prompts_are_disjoint(tmp_path):
    import torch

    from sdsqueeze import prompts
    from sdsqueeze.distill.teacher import TeacherData, training_prompts

    coco = prompts.load_coco_captions(REPO / "data" / "coco_tiny_captions.json")
    evaluation = prompts.select_prompts(coco, n=8, seed=42)
    chosen = training_prompts(coco, evaluation, n=32, seed=42)
    eval_captions = {c for i in evaluation.image_id for c in (prompts.clean_caption(a["caption"]) for a in coco.loadAnns(coco.getAnnIds(imgIds=[int(i)])))}
    assert len(set(chosen)) == 32 and not set(chosen) & eval_captions
    assert chosen == training_prompts(coco, evaluation, n=32, seed=42)
    with pytest.raises(prompts.CaptionsError, match="only 40 images"):
        training_prompts(coco, evaluation, n=41, seed=42)
    data = TeacherData(prompt_embeds=torch.randn(3, 77, 8), negative_prompt_embeds=torch.randn(1, 77, 8),
                       noise=torch.randn(3, 4, 2, 2), latents=torch.randn(3, 4, 2, 2), settings={"steps": 25})
    data.save(tmp_path / "t.safetensors")
    back = TeacherData.load(tmp_path / "t.safetensors")
    assert back.settings == {"steps": 25} and len(back) == 3 and torch.equal(back.latents, data.latents)


def _fake_model(folder: Path, scheduler: dict, time_cond_proj_dim=None) -> None:
    (folder / "scheduler").mkdir(parents=True)
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    (folder / "unet" / "config.json").write_text(json.dumps({"time_cond_proj_dim": time_cond_proj_dim}))


def test_report_section_shows_the_seed_table_from_the_run_files(tmp_path, monkeypatch):
    """Rows in the seed's order, numbers from summary.csv and timing.csv, UNet evaluations counted
    from each sampler (PNDM's extra step, CFG doubled unless w-conditioned), loss curves drawn."""
    import sys

    import pandas as pd

    sys.path.insert(0, str(REPO / "tests"))
    from report_fixtures import embedded_distill_config, write_report_inputs

    from sdsqueeze.models import SD15_SCHEDULER
    from sdsqueeze.report import distill
    from sdsqueeze.report.page import ReportContext

    monkeypatch.chdir(REPO)
    config = embedded_distill_config()
    inputs = write_report_inputs(tmp_path / "m", config)
    records = []
    pndm = {**SD15_SCHEDULER, "_class_name": "PNDMScheduler", "clip_sample": False}
    ddim, tcd = {**pndm, "_class_name": "DDIMScheduler"}, {**pndm, "_class_name": "TCDScheduler"}
    for name, scheduler, w in (("tiny", pndm, None), ("pd-4", ddim, None), ("lcm-4", tcd, None),
                               ("pd-4-w", ddim, 256), ("lcm-4-w", tcd, 256), ("bksdm-small", pndm, None)):
        _fake_model(tmp_path / name / "pipeline", scheduler, w)
        (tmp_path / name / "record.json").write_text(json.dumps({"name": name, "path": str(tmp_path / name / "pipeline")}))
        records.append(str(tmp_path / name / "record.json"))
    files = []
    for name in ("pd-4", "lcm-4", "pd-4-w", "lcm-4-w", "bksdm-small"):
        folder = tmp_path / "distill" / name
        folder.mkdir(parents=True)
        summary = {"student": name, "description": name, "teacher": "tiny", "parameters": 60, "teacher_parameters": 100,
                   "unet_bytes": 240, "iterations": 4, "train_seconds": 1.5, "loss_start": 1.0, "loss_end": 0.5}
        (folder / "summary.json").write_text(json.dumps(summary))
        pd.DataFrame({"phase": "kd", "iteration": [1, 2], "step": [1, 2], "loss": [1.0, 0.5],
                      "it_per_s": 1.0}).to_csv(folder / "loss.csv", index=False)
        files += [str(folder / "summary.json"), str(folder / "loss.csv")]
    ctx = ReportContext(inputs={**inputs, "distill": files, "distill_models": records}, config=config,
                        out_dir=tmp_path / "report")
    section = distill.distill_section(ctx)
    table = distill.seed_table(ctx, pd.read_csv(inputs["summary"][0]), None, pd.read_csv(inputs["timing"][0]))
    assert list(table.Variant) == ["fp32-classic", "dpm-8", "dpm-20", "ddim-4", "ddim-4-trailing", "lcm-4", "lcm-4-w",
                                   "pd-4", "pd-4-w", "bksdm-small"]
    evaluations = dict(zip(table.Variant, table["UNet evaluations / image"]))
    # CFG-keeping students (the default's) call the UNet twice per step, w-conditioned ones once
    assert evaluations == {"fp32-classic": 52, "dpm-8": 16, "dpm-20": 40, "ddim-4": 8, "ddim-4-trailing": 8,
                           "pd-4": 8, "lcm-4": 8, "pd-4-w": 4, "lcm-4-w": 4, "bksdm-small": 52}
    summary = pd.read_csv(inputs["summary"][0])
    pd4 = summary[(summary.variant == "pd-4") & (summary.metric == "psnr")].iloc[0]
    assert f"{pd4['mean']:.2f} [{pd4.ci_low:.2f}, {pd4.ci_high:.2f}]" in section.body_html
    assert "HPSv2" in section.body_html and (tmp_path / "report" / "figures" / "distill_loss.png").stat().st_size > 0
    assert "Step-distilled students vs undistilled DDIM" in section.body_html
    checks = distill.comparisons(config, summary)  # every student against both DDIM spacings at 4 steps
    assert {(r["Student variant"], r.Baseline) for _, r in checks.iterrows()} == {
        (s, b) for s in ("pd-4", "lcm-4", "pd-4-w", "lcm-4-w") for b in ("ddim-4", "ddim-4-trailing")}


def test_metrics_unavailable_for_one_reason_are_named_on_one_line(tmp_path, monkeypatch):
    import sys

    import pandas as pd

    sys.path.insert(0, str(REPO / "tests"))
    from report_fixtures import embedded_distill_config, write_report_inputs

    from sdsqueeze.report import distill
    from sdsqueeze.report.page import ReportContext

    monkeypatch.chdir(REPO)
    config = embedded_distill_config()
    inputs = write_report_inputs(tmp_path / "m", config)
    variants = pd.read_csv(inputs["summary"][0]).variant.unique()
    reason = "unavailable: pt_inception.pth: metrics.weights_dir not set"
    rows = [{"variant": v, "metric": m, "value": float("nan"), "status": reason}
            for v in variants for m in ("fid_reference", "fid_coco", "inception_score")]
    rows += [{"variant": v, "metric": "fd_effnetlite0", "value": 1.5, "status": "ok"} for v in variants]
    pd.DataFrame(rows).to_csv(tmp_path / "distribution.csv", index=False)
    student = tmp_path / "distill" / "pd-4"
    student.mkdir(parents=True)
    (student / "summary.json").write_text(json.dumps(
        {"student": "pd-4", "description": "pd-4", "teacher": "tiny", "parameters": 60, "teacher_parameters": 100,
         "unet_bytes": 240, "iterations": 4, "train_seconds": 1.5, "loss_start": 1.0, "loss_end": 0.5}))
    ctx = ReportContext(inputs={**inputs, "distill": [str(student / "summary.json")], "distill_models": [],
                                "distribution": [str(tmp_path / "distribution.csv")]},
                        config=config, out_dir=tmp_path / "report")
    body = distill.distill_section(ctx).body_html
    assert body.count("pt_inception.pth") == 1
    assert "FID vs teacher, FID vs COCO, IS: unavailable: pt_inception.pth" in body


def test_default_run_trains_all_three_students_and_compares_both_ddim_spacings():
    """The default config (no overlay) turns the stage on with a student of every method, the
    step-distilled ones next to undistilled DDIM at their steps in both spacings."""
    default = sq_config.validate(yaml.safe_load((REPO / "config.yaml").read_text()))
    students = default["distill"]["students"]
    assert default["distill"]["enabled"]
    assert {s["method"] for s in students.values()} == {"progressive", "consistency", "bksdm"}
    for name, spec in default["variants"].items():
        if spec.get("student") in ("pd-4", "lcm-4"):
            steps = spec["steps"]
            schedulers = {v.get("scheduler") for v in default["variants"].values()
                          if not v.get("student") and v.get("steps") == steps}
            assert {"ddim", "ddim-trailing"} <= schedulers, name


def test_distillation_doc_quality_table_is_generated_from_the_committed_results():
    """docs/distillation.md's quick-check block is exactly what the script renders from
    docs/distillation/quick_check_*.csv."""
    import subprocess
    import sys

    doc = (REPO / "docs" / "distillation.md").read_text()
    command = "python benchmarks/distill_quick_check.py --table docs/distillation/quick_check_*.csv"
    begin = f"<!-- BEGIN generated: {command} -->\n"
    block = doc.split(begin, 1)[1].split("<!-- END generated -->", 1)[0]
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "docs" / "distillation").glob("quick_check_*.csv"))
    assert files, "no committed quick-check results"
    rendered = subprocess.run([sys.executable, "benchmarks/distill_quick_check.py", "--table", *files],
                              capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert block.strip() == rendered.strip(), f"rerun: {command}, paste between the markers"
