"""A trainer's smoke run on a seeded architecture: loss, iterations/s and peak memory as JSON.

    python -m sdsqueeze.distill.smoke --trainer progressive consistency bksdm --arch sd15 --iterations 300 --bf16 \
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


def seeded_pipeline(arch: str, seed: int, device: str, tokenizer_dir: str | None = None):
    """StableDiffusionPipeline of SD 1.5's (or the tiny model's) architecture, seeded weights; the
    CLIP tokenizer from ``tokenizer_dir`` when given (GPU machines may lack open_clip, which
    ``write_clip_tokenizer`` reads), else written on the spot."""
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from ...models import SD15_ARCHITECTURE, TinySpec, build_sd_components, sd15_scheduler, write_clip_tokenizer

    architecture, size = (SD15_ARCHITECTURE, 512) if arch == "sd15" else (TinySpec().architecture(), 128)
    torch.manual_seed(seed)
    with torch.device(device):  # initialised where they run: SD 1.5's random init takes a minute on a CPU
        unet, vae, text_encoder = build_sd_components(architecture, size)
    if tokenizer_dir:
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    else:
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


def run_progressive(pipe, data, args, work: Path) -> dict:
    """Stage 1 for half the iterations, then one halving round (8 -> 4 steps) for the other half."""
    from ..progressive import ProgressiveSettings, train_guided_pd

    half = max(1, args.iterations // 2)
    settings = ProgressiveSettings(step_schedule=(8, 4), guidance_iters=half, round_iters=args.iterations - half,
                                   batch_size=args.batch_size, lr=args.learning_rate, ckpt_every=args.iterations,
                                   bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing, seed=args.seed,
                                   progress=False)
    _, _, report = train_guided_pd(pipe, data, settings, work / "ckpt")
    return report


def run_consistency(pipe, data, args, work: Path) -> dict:
    from ..consistency import ConsistencySettings, train_lcm

    settings = ConsistencySettings(iters=args.iterations, batch_size=args.batch_size, lr=args.learning_rate,
                                   ckpt_every=args.iterations, bf16=args.bf16,
                                   gradient_checkpointing=args.gradient_checkpointing, seed=args.seed, progress=False)
    _, _, report = train_lcm(pipe, data, settings, work / "ckpt")
    return report


# Trainer name -> (pipe, teacher data, parsed arguments, work folder) -> report; the report's
# phases name their loss logs.
TRAINERS = {"bksdm": run_bksdm, "progressive": run_progressive, "consistency": run_consistency}


def run(args, on_record=None) -> list[dict]:
    """Build the seeded teacher and its data once, run each trainer named in ``args.trainer`` on
    them in turn, return one result record per trainer (``on_record(records)`` after each one, so a
    run stopped part-way keeps what it finished)."""
    import sys

    import torch

    from ... import io
    from ..loop import read_log
    from ..teacher import build_teacher_data

    if args.device == "cpu":
        torch.set_num_threads(1)
    began = time.perf_counter()
    pipe, size = seeded_pipeline(args.arch, args.seed, args.device, args.tokenizer)
    prompts = [f"a photograph of object number {i} on a table" for i in range(args.prompts)]
    data = build_teacher_data(pipe, prompts, list(range(args.prompts)), steps=args.teacher_steps, guidance=7.5,
                              height=size, width=size, batch_size=8, progress=False)
    teacher_seconds = time.perf_counter() - began
    records = []
    for trainer in args.trainer:
        with tempfile.TemporaryDirectory() as work:
            report = TRAINERS[trainer](pipe, data, args, Path(work))
            curves = {p["phase"]: [row["loss"] for row in read_log(p["log"])] for p in report["phases"]}
        for phase in report["phases"]:
            phase.pop("log")
        records.append({"trainer": trainer, "arch": args.arch, "size": size, "batch_size": args.batch_size,
                        "bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing,
                        "weights": "seeded (no checkpoint)", "teacher_data_seconds": teacher_seconds, **report,
                        "loss_curves": curves, "device": io.device_description(args.device),
                        "torch": torch.__version__,
                        "command": "python -m sdsqueeze.distill.smoke " + " ".join(sys.argv[1:])})
        if on_record is not None:
            on_record(records)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return records


TABLE_COLUMNS = ("trainer", "phase", "iterations", "loss start", "loss end", "it/s", "peak GiB")


def smoke_table(records: list[dict]) -> str:
    """A Markdown table of smoke records: one row per training phase (loss start/end are the
    means of the phase's first and last iterations, see each trainer's report)."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for record in records:
        for phase in record["phases"]:
            peak = phase.get("peak_memory_bytes")
            cells = [record["trainer"], phase["phase"], str(phase["iterations"]), f"{phase['loss_start']:.4g}",
                     f"{phase['loss_end']:.4g}", f"{phase['iterations_per_second']:.2f}",
                     "n/a" if peak is None else f"{peak / 2**30:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def smoke_setup(records: list[dict]) -> str:
    """One line naming the device, the architecture, the batch and the precision of the records."""
    first = records[0]
    gpu = first["device"].get("gpu", first["device"]["device"])
    return (f"Device: {gpu} (torch {first['torch']}); {first['arch']} architecture at {first['size']} px, weights "
            f"{first['weights']}; batch {first['batch_size']}, "
            f"{'bf16 autocast' if first['bf16'] else 'float32'}"
            f"{', gradient checkpointing' if first['gradient_checkpointing'] else ''}. "
            f"Command: `{first['command']}`")


# Which measured phase stands for each of a configured student's training phases.
PHASE_OF = {"progressive": (("guidance", "guidance_iterations"), ("steps-4", "rounds")),
            "consistency": (("consistency", "iterations"),), "bksdm": (("kd", "iterations"),)}


def expected_gpu_hours(records: list[dict], students: dict) -> list[dict]:
    """Each configured student's training time on the records' GPU: its iterations at the measured
    iterations/s of the same trainer's phase, scaled by its batch over the measured batch (throughput
    taken as flat in the batch: at a small measured batch the GPU is not full, so this errs long).
    A progressive student runs stage 1 and then one round per halving of its schedule."""
    measured = {(r["trainer"], p["phase"]): (p["iterations_per_second"], r["batch_size"])
                for r in records for p in r["phases"]}
    method_to_trainer = {"progressive": "progressive", "consistency": "consistency", "bksdm": "bksdm"}
    rows = []
    for name, student in students.items():
        trainer = method_to_trainer[student["method"]]
        seconds = 0.0
        for phase, key in PHASE_OF[trainer]:
            rate, batch = measured[(trainer, phase)]
            if key == "rounds":
                iterations = student["iterations"] * (len(student["schedule"]) - 1)
            else:
                iterations = student.get(key, student["iterations"])
            seconds += iterations / rate * student["batch_size"] / batch
        rows.append({"student": name, "method": student["method"], "batch_size": student["batch_size"],
                     "gpu_hours": seconds / 3600})
    return rows


def doc_block(records: list[dict], students: dict, config_name: str) -> str:
    """docs/distillation.md's H200 block: the setup line, the phase table and the expected GPU-hours of
    ``config_name``'s students."""
    hours = expected_gpu_hours(records, students)
    lines = [smoke_setup(records), "", smoke_table(records), "",
             f"Expected training GPU-hours of {config_name}'s students on this GPU (teacher data not included):", "",
             "| student | method | batch | GPU-hours |", "|---|---|---|---|"]
    lines += [f"| {h['student']} | {h['method']} | {h['batch_size']} | {h['gpu_hours']:.1f} |" for h in hours]
    return "\n".join(lines)
