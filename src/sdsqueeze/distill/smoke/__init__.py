"""A trainer's smoke run on a seeded architecture: loss, iterations/s and peak memory as JSON.

    python -m sdsqueeze.distill.smoke --trainer bksdm --arch sd15 --iterations 300 --bf16 \
        --gradient-checkpointing --out results.json

No weights reach the GPU machines, so the teacher is SD 1.5's *architecture* with seeded weights
(``sdsqueeze.models.build_sd_components``): its speed and memory are SD 1.5's, its images are not.
The teacher data is built by the same code the workflow runs (sdsqueeze.distill.teacher).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

ARCHS = ("sd15", "tiny")


def seeded_pipeline(arch: str, seed: int, device: str):
    """StableDiffusionPipeline of SD 1.5's (or the tiny model's) architecture, seeded weights."""
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from ...models import SD15_ARCHITECTURE, TinySpec, build_sd_components, sd15_scheduler, write_clip_tokenizer

    architecture, size = (SD15_ARCHITECTURE, 512) if arch == "sd15" else (TinySpec().architecture(), 128)
    torch.manual_seed(seed)
    unet, vae, text_encoder = build_sd_components(architecture, size)
    with tempfile.TemporaryDirectory() as folder:
        write_clip_tokenizer(Path(folder))
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=sd15_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), size


def run_bksdm(pipe, data, args, work: Path) -> dict:
    from ..bksdm import BKSDMSettings, train_bksdm

    remove = tuple(args.remove.split(",")) if args.remove else (
        ("mid_block", "pair.0", "pair.1", "pair.2", "pair.3") if args.arch == "sd15" else ("mid_block", "innermost_stage"))
    settings = BKSDMSettings(remove=remove, iterations=args.iterations, batch_size=args.batch_size,
                             learning_rate=args.learning_rate, checkpoint_every=args.iterations,
                             mixed_precision="bf16" if args.bf16 else "no",
                             gradient_checkpointing=args.gradient_checkpointing, seed=args.seed)
    _, _, report = train_bksdm(pipe, data, settings, work / "ckpt")
    return {**report, "parameter_reduction": 1 - report["student_parameters"] / report["teacher_parameters"]}


# Trainer name -> (pipe, teacher data, parsed arguments, work folder) -> report; the report's
# phases name their loss logs.
TRAINERS = {"bksdm": run_bksdm}


def run(args) -> dict:
    """Build the seeded teacher and its data, run the trainer, return the result record."""
    import sys

    import torch

    from ... import io
    from ..loop import read_log
    from ..teacher import build_teacher_data

    if args.device == "cpu":
        torch.set_num_threads(1)
    began = time.perf_counter()
    pipe, size = seeded_pipeline(args.arch, args.seed, args.device)
    prompts = [f"a photograph of object number {i} on a table" for i in range(args.prompts)]
    data = build_teacher_data(pipe, prompts, list(range(args.prompts)), steps=args.teacher_steps, guidance=7.5,
                              height=size, width=size, batch_size=8, progress=False)
    teacher_seconds = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as work:
        report = TRAINERS[args.trainer](pipe, data, args, Path(work))
        curves = {p["phase"]: [row["loss"] for row in read_log(p["log"])] for p in report["phases"]}
    for phase in report["phases"]:
        phase.pop("log")
    return {"trainer": args.trainer, "arch": args.arch, "size": size, "weights": "seeded (no checkpoint)",
            "teacher_data_seconds": teacher_seconds, **report, "loss_curves": curves,
            "device": io.device_description(args.device), "torch": torch.__version__,
            "command": "python -m sdsqueeze.distill.smoke " + " ".join(sys.argv[1:])}
