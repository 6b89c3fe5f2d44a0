"""Quick check of the step-distillation acceptance on a model folder, outside the DAG (indicative):
PSNR/SSIM (mean, 95% bootstrap interval) against the teacher's 25-step guided images for undistilled
DDIM/DPM-Solver++ at 4 steps and for the PD and LCM students trained with the given settings.

    python benchmarks/distill_quick_check.py --model resources/models/tiny/pipeline --work /tmp/dq \\
        --settings '{"pd": {"step_schedule": [8, 4], "guidance_iters": 150, "round_iters": 100, "lr": 5e-4,
                     "w_range": [5.5, 7.5]}, "lcm": {"guidance_iters": 150, "iters": 100, "lr": 5e-4,
                     "w_range": [5.5, 7.5], "num_ddim_timesteps": 20, "sampler": "tcd"}}'

The teacher data (``--train`` examples from COCO captions not in the evaluation prompts) is cached
in ``--work``; the students' checkpoints too, so a rerun with the same folder resumes.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sdsqueeze import seeding  # noqa: E402
from sdsqueeze.distill.consistency import ConsistencySettings, train_lcm  # noqa: E402
from sdsqueeze.distill.progressive import ProgressiveSettings, train_guided_pd  # noqa: E402
from sdsqueeze.distill.students import scheduler_from_config  # noqa: E402
from sdsqueeze.distill.teacher import TeacherData, build_teacher_data, training_prompts  # noqa: E402
from sdsqueeze.prompts import load_coco_captions  # noqa: E402
from sdsqueeze.quality.images import psnr, ssim  # noqa: E402
from sdsqueeze.quality.stats import bootstrap_mean  # noqa: E402


def as_settings(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--prompts", default=str(REPO / "results" / "prompts" / "coco-tiny.csv"))
    parser.add_argument("--captions", default=str(REPO / "data" / "coco_tiny_captions.json"))
    parser.add_argument("--eval", type=int, default=8)
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    settings = json.loads(args.settings)
    pipe = StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    teacher_scheduler = pipe.scheduler
    evaluation = pd.read_csv(args.prompts).head(args.eval)
    size = args.size
    noise = seeding.initial_latents(list(evaluation.seed), seeding.latent_shape(pipe, size, size))
    data_path = work / "teacher.safetensors"
    if not data_path.exists():
        candidates = training_prompts(load_coco_captions(args.captions), evaluation, args.train, seed=0)
        seeds = [seeding.prompt_seed(7, i) for i in range(len(candidates))]
        build_teacher_data(pipe, candidates, seeds, steps=25, guidance=7.5, height=size, width=size,
                           progress=False).save(data_path)
    data = TeacherData.load(data_path)

    def images(sampler, scheduler, steps):
        sampler.scheduler = scheduler
        out = sampler(list(evaluation.prompt), latents=noise.clone(), num_inference_steps=steps, guidance_scale=7.5,
                      height=size, width=size, output_type="np", generator=torch.Generator().manual_seed(0)).images
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)

    reference = images(pipe, teacher_scheduler, 25)
    rows = []

    def score(name, candidate):
        for metric, function in (("psnr", psnr), ("ssim", ssim)):
            mean, low, high = bootstrap_mean([function(r, c) for r, c in zip(reference, candidate, strict=True)])
            rows.append({"variant": name, "metric": metric, "mean": mean, "low": low, "high": high})
        print(pd.DataFrame(rows[-2:]).to_string(index=False, header=len(rows) == 2), flush=True)

    config = teacher_scheduler.config
    score("ddim-4", images(pipe, DDIMScheduler.from_config(config), 4))
    score("ddim-4-trailing", images(pipe, DDIMScheduler.from_config(config, timestep_spacing="trailing"), 4))
    score("dpm-4", images(pipe, DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++"), 4))
    pipe.scheduler = teacher_scheduler
    trained = []
    if "pd" in settings:
        trained.append(("pd-4", *train_guided_pd(pipe, data, ProgressiveSettings(**as_settings(settings["pd"])),
                                                 work / "pd")))
    if "lcm" in settings:
        trained.append(("lcm-4", *train_lcm(pipe, data, ConsistencySettings(**as_settings(settings["lcm"])),
                                            work / "lcm")))
    for name, unet, scheduler_config, _ in trained:
        student = StableDiffusionPipeline(**{**pipe.components, "unet": unet})
        student.set_progress_bar_config(disable=True)
        score(name, images(student, scheduler_from_config(scheduler_config), 4))
    pd.DataFrame(rows).to_csv(work / "quality.csv", index=False)


main()
