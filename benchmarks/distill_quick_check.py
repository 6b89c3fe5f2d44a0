"""The step-distillation acceptance on more evaluation prompts than the default run's, outside the DAG
(CPU, indicative): PSNR/SSIM (mean, 95% bootstrap interval) against the teacher's full-step guided
images for the undistilled model with DDIM at 4 steps (the model config's spacing, and trailing), at
8 and 16 trailing steps (the targets of the students' rounds), and for the configured step-distilled students, trained exactly as rules/distill.smk trains them.

    python benchmarks/distill_quick_check.py --model resources/models/tiny/pipeline --work /tmp/dq \\
        --configfile config.yaml config/distill-embedded.yaml --eval 32 \\
        --out docs/distillation/quick_check_shapes.csv
    python benchmarks/distill_quick_check.py --table docs/distillation/quick_check_*.csv   # docs' table

Evaluation prompts: the prompt stage's selection at ``--eval`` prompts (a superset of the default
run's); training prompts: ``distill.prompts`` captions of images none of them uses. The teacher data
and the students' checkpoints are cached in ``--work``, so a rerun with the same folder resumes.
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

BASELINES = {"ddim-4": {}, "ddim-4-trailing": {"timestep_spacing": "trailing"}}
# The undistilled trailing DDIM at the teachers' step counts of the students' rounds (halving's 8,
# and 16 for four teacher steps per student step): what a student that matched its target would score
TARGETS = {"ddim-8-trailing": 8, "ddim-16-trailing": 16}
STEP_METHODS = ("progressive", "consistency")


def merged_config(paths: list[str]) -> dict:
    """The config files merged as Snakemake merges ``--configfile`` overlays, then validated."""
    import yaml
    from snakemake.utils import update_config

    from sdsqueeze import config as sq_config

    config: dict = {}
    for path in paths:
        update_config(config, yaml.safe_load(Path(path).read_text()))
    return sq_config.validate(config)


def step_students(config: dict) -> dict[str, dict]:
    """The configured step-distilled students that sample at 4 steps, with their variant's steps."""
    students = config["distill"]["students"]
    return {name: spec for name, spec in students.items() if spec["method"] in STEP_METHODS}


def measure(args) -> pd.DataFrame:
    import numpy as np
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from sdsqueeze import seeding
    from sdsqueeze.distill import students as trainers
    from sdsqueeze.distill.teacher import TeacherData, build_teacher_data, training_prompts
    from sdsqueeze.prompts import load_coco_captions, select_prompts
    from sdsqueeze.quality.images import psnr, ssim
    from sdsqueeze.quality.stats import bootstrap_mean

    torch.set_num_threads(1)
    config = merged_config(args.configfile)
    seed, generation, settings = config["seed"], config["generation"], config["prompts"]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pipe = StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    teacher_scheduler = pipe.scheduler
    coco = load_coco_captions(settings["captions"])
    evaluation = select_prompts(coco, args.eval, seed, settings["min_words"], settings["generic_phrases"])
    size, guidance, steps = int(generation["height"]), float(generation["guidance"]), int(generation["steps"])
    noise = seeding.initial_latents(list(evaluation.seed), seeding.latent_shape(pipe, size, size))
    data_path = work / "teacher.safetensors"
    if not data_path.exists():
        texts = training_prompts(coco, evaluation, config["distill"]["prompts"], seed, settings["min_words"],
                                 settings["generic_phrases"])
        seeds = [seeding.prompt_seed(seed + 1, i) for i in range(len(texts))]
        build_teacher_data(pipe, texts, seeds, steps=steps, guidance=guidance, height=size, width=size,
                           progress=False).save(data_path)
    data = TeacherData.load(data_path)

    def images(sampler, scheduler, n_steps):
        sampler.scheduler = scheduler
        out = sampler(list(evaluation.prompt), latents=noise.clone(), num_inference_steps=n_steps,
                      guidance_scale=guidance, height=size, width=size, output_type="np",
                      generator=torch.Generator().manual_seed(0)).images
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)

    reference = images(pipe, teacher_scheduler, steps)
    rows = []

    def score(variant, candidate, **extra):
        for metric, function in (("psnr", psnr), ("ssim", ssim)):
            mean, low, high = bootstrap_mean([function(r, c) for r, c in zip(reference, candidate, strict=True)])
            rows.append({"variant": variant, "metric": metric, "mean": mean, "ci_low": low, "ci_high": high,
                         "prompts": len(evaluation), **extra})
        print(pd.DataFrame(rows[-2:]).to_string(index=False), flush=True)

    for name, overrides in BASELINES.items():
        score(name, images(pipe, DDIMScheduler.from_config(teacher_scheduler.config, **overrides), 4),
              unet_evaluations=8)
    for name, n_steps in TARGETS.items():
        score(name, images(pipe, DDIMScheduler.from_config(teacher_scheduler.config, timestep_spacing="trailing"),
                           n_steps), unet_evaluations=2 * n_steps)
    for name, spec in step_students(config).items():
        pipe.scheduler = teacher_scheduler
        settings_ = trainers.trainer_settings(spec["method"], spec, seed, progress=False)
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        began = time.perf_counter()
        unet, scheduler_config, report = trainers.train(spec["method"], pipe, data, settings_, work / f"{name}-{key}")
        train_seconds = sum(phase["seconds"] for phase in report["phases"])
        student = StableDiffusionPipeline(**{**pipe.components, "unet": unet})
        student.set_progress_bar_config(disable=True)
        cfg = unet.config.time_cond_proj_dim is None
        score(name, images(student, trainers.scheduler_from_config(scheduler_config), 4),
              unet_evaluations=8 if cfg else 4, guidance_mode="cfg" if cfg else "embedded",
              train_seconds=round(train_seconds, 1), wall_seconds=round(time.perf_counter() - began, 1))
    table = pd.DataFrame(rows)
    table.insert(0, "model", args.name)
    return table


def markdown(paths: list[str]) -> str:
    """One table per results file: each variant's PSNR and SSIM with intervals, and whether its
    interval lies wholly above each undistilled DDIM baseline's."""
    parts = []
    for path in paths:
        results = pd.read_csv(path)
        wide = {(r.variant, r.metric): r for r in results.itertuples()}
        rows = []
        for variant in dict.fromkeys(results.variant):
            psnr, ssim = wide[(variant, "psnr")], wide[(variant, "ssim")]
            row = {"variant": variant, "guidance": getattr(psnr, "guidance_mode", None),
                   "UNet evaluations": int(psnr.unet_evaluations),
                   "PSNR (dB) [95% CI]": f"{psnr.mean:.2f} [{psnr.ci_low:.2f}, {psnr.ci_high:.2f}]",
                   "SSIM [95% CI]": f"{ssim.mean:.3f} [{ssim.ci_low:.3f}, {ssim.ci_high:.3f}]"}
            for baseline in BASELINES:
                if variant not in BASELINES and variant not in TARGETS:
                    apart = [wide[(variant, m)].ci_low > wide[(baseline, m)].ci_high for m in ("psnr", "ssim")]
                    row[f"above {baseline}"] = {(True, True): "both", (True, False): "PSNR only",
                                                (False, True): "SSIM only"}.get(tuple(apart), "no")
                else:
                    row[f"above {baseline}"] = "—"
            row["training s"] = "—" if pd.isna(getattr(psnr, "train_seconds", float("nan"))) else f"{psnr.train_seconds:.0f}"
            rows.append(row)
        table = pd.DataFrame(rows)
        table["guidance"] = table["guidance"].fillna("cfg (undistilled)")
        parts.append(f"`{Path(path).name}`: model `{results.model.iloc[0]}`, {int(results.prompts.iloc[0])} "
                     f"evaluation prompts\n\n" + table.to_markdown(index=False))
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", nargs="+", help="print the docs table of these results files and exit")
    parser.add_argument("--model", help="the teacher's pipeline folder")
    parser.add_argument("--name", default="tiny", help="the model's name in the results file")
    parser.add_argument("--configfile", nargs="+", default=[str(REPO / "config.yaml")])
    parser.add_argument("--work")
    parser.add_argument("--eval", type=int, default=32, help="evaluation prompts")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.table:
        print(markdown(sorted(args.table)), end="")
        return
    table = measure(args)
    table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
