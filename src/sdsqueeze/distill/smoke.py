"""A trainer's smoke run on a seeded architecture: loss, iterations/s and peak memory as JSON.

    python -m sdsqueeze.distill.smoke --trainer bksdm --arch sd15 --iterations 300 --bf16 \
        --gradient-checkpointing --out results.json

No weights reach the GPU machines, so the teacher is SD 1.5's *architecture* with seeded weights
(``sdsqueeze.models.build_sd_components``): its speed and memory are SD 1.5's, its images are not.
The teacher data is built by the same code the workflow runs (sdsqueeze.distill.teacher).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ARCHS = ("sd15", "tiny")


def seeded_pipeline(arch: str, seed: int, device: str):
    """StableDiffusionPipeline of SD 1.5's (or the tiny model's) architecture, seeded weights."""
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from ..models import SD15_ARCHITECTURE, TinySpec, build_sd_components, sd15_scheduler, write_clip_tokenizer

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


TRAINERS = ("bksdm",)


def run_bksdm(pipe, data, args, work: Path) -> dict:
    from .bksdm import BKSDMSettings, train_bksdm

    remove = tuple(args.remove.split(",")) if args.remove else (
        ("mid_block", "pair.0", "pair.1", "pair.2", "pair.3") if args.arch == "sd15" else ("mid_block", "innermost_stage"))
    settings = BKSDMSettings(remove=remove, iterations=args.iterations, batch_size=args.batch_size,
                             learning_rate=args.learning_rate, checkpoint_every=args.iterations,
                             mixed_precision="bf16" if args.bf16 else "no",
                             gradient_checkpointing=args.gradient_checkpointing, seed=args.seed)
    _, _, report = train_bksdm(pipe, data, settings, work / "ckpt")
    return {**report, "parameter_reduction": 1 - report["student_parameters"] / report["teacher_parameters"]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trainer", choices=TRAINERS, required=True)
    parser.add_argument("--arch", choices=ARCHS, default="sd15")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--prompts", type=int, default=16, help="teacher-data examples")
    parser.add_argument("--teacher-steps", type=int, default=10)
    parser.add_argument("--remove", default="", help="BK-SDM removals, comma-separated")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import torch

    from .. import io
    from .teacher import build_teacher_data

    if args.device == "cpu":
        torch.set_num_threads(1)
    began = time.perf_counter()
    pipe, size = seeded_pipeline(args.arch, args.seed, args.device)
    prompts = [f"a photograph of object number {i} on a table" for i in range(args.prompts)]
    data = build_teacher_data(pipe, prompts, list(range(args.prompts)), steps=args.teacher_steps, guidance=7.5,
                              height=size, width=size, batch_size=8, progress=False)
    teacher_seconds = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as work:
        result = {"trainer": args.trainer, "arch": args.arch, "size": size, "weights": "seeded (no checkpoint)",
                  "teacher_data_seconds": teacher_seconds, **run_bksdm(pipe, data, args, Path(work))}
        from .loop import read_log

        result["loss_curve"] = [row["loss"] for row in read_log(Path(work) / "ckpt" / "loss.csv")]
    result["device"] = io.device_description(args.device)
    result["torch"] = torch.__version__
    result["command"] = "python -m sdsqueeze.distill.smoke " + " ".join(argv or __import__("sys").argv[1:])
    io.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
