"""One student from the config: its trainer's settings, the training, the saved pipeline.

The config's student keys (schemas/config.schema.yaml, ``$defs/student``) map onto each trainer's
settings here; every trainer returns (UNet, the scheduler config it samples with, a report), and
the student is saved as a whole diffusers pipeline (the teacher's text encoder, VAE and tokenizer,
its own UNet and scheduler), so ``from_pretrained`` loads it like any model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

LOSS_COLUMNS = ["phase", "iteration", "step", "loss", "it_per_s"]


def trainer_settings(method: str, student: dict, seed: int, progress: bool = True):
    """The trainer's settings dataclass from a student's config keys."""
    bf16 = student.get("mixed_precision", "no") == "bf16"
    common = {"batch_size": student.get("batch_size", 8), "seed": seed,
              "gradient_checkpointing": student.get("gradient_checkpointing", False)}
    every = student.get("checkpoint_every", 25)
    if method == "bksdm":
        from .bksdm import BKSDMSettings

        keys = {k: student[k] for k in ("remove", "output_kd_weight", "feature_kd_weight") if k in student}
        if "remove" in keys:
            keys["remove"] = tuple(keys["remove"])
        return BKSDMSettings(iterations=student.get("iterations", 100), learning_rate=student.get("learning_rate", 1e-4),
                             checkpoint_every=every, mixed_precision="bf16" if bf16 else "no", **common, **keys)
    if method == "progressive":
        from .progressive import ProgressiveSettings

        keys = {}
        if "schedule" in student:
            keys["step_schedule"] = tuple(student["schedule"])
        if "guidance_range" in student:
            keys["w_range"] = tuple(student["guidance_range"])
        if "guidance_mode" in student:
            keys["guidance"] = student["guidance_mode"]
        if "teacher_substeps" in student:
            keys["teacher_substeps"] = student["teacher_substeps"]
        iterations = student.get("iterations", 100)
        return ProgressiveSettings(guidance_iters=student.get("guidance_iterations", iterations), round_iters=iterations,
                                   lr=student.get("learning_rate", 1e-4), ckpt_every=every, bf16=bf16,
                                   progress=progress, **common, **keys)
    if method == "consistency":
        from .consistency import ConsistencySettings

        keys = {}
        if "guidance_range" in student:
            keys["w_range"] = tuple(student["guidance_range"])
        if "steps" in student:
            keys["num_ddim_timesteps"] = student["steps"]
        if "ema_decay" in student:
            keys["ema_decay"] = student["ema_decay"]
        if "guidance_iterations" in student:
            keys["guidance_iters"] = student["guidance_iterations"]
        if "sampler" in student:
            keys["sampler"] = student["sampler"]
        if "solver_substeps" in student:
            keys["solver_substeps"] = student["solver_substeps"]
        if "guidance_mode" in student:
            keys["guidance"] = student["guidance_mode"]
        return ConsistencySettings(iters=student.get("iterations", 100), lr=student.get("learning_rate", 1e-4),
                                   ckpt_every=every, bf16=bf16, progress=progress, **common, **keys)
    raise ValueError(f"unknown distillation method {method!r}")


def train(method: str, pipe, teacher_data, settings, work_dir: str | Path):
    """Run the method's trainer; (UNet, scheduler config, report)."""
    if method == "bksdm":
        from .bksdm import train_bksdm

        return train_bksdm(pipe, teacher_data, settings, work_dir, progress=True)
    if method == "progressive":
        from .progressive import train_guided_pd

        return train_guided_pd(pipe, teacher_data, settings, work_dir)
    from .consistency import train_lcm

    return train_lcm(pipe, teacher_data, settings, work_dir)


def scheduler_from_config(scheduler_config: dict):
    import diffusers

    return getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config)


def save_student(pipe, unet, scheduler_config: dict, out_dir: str | Path) -> None:
    """The teacher's pipeline with the student's UNet and sampler, written by save_pretrained."""
    student = type(pipe)(**{**pipe.components, "unet": unet, "scheduler": scheduler_from_config(scheduler_config)})
    student.save_pretrained(out_dir, safe_serialization=True)


def loss_table(report: dict) -> pd.DataFrame:
    """Every phase's loss log in one table; ``step`` counts iterations across phases."""
    frames = []
    offset = 0
    for phase in report["phases"]:
        log = pd.read_csv(phase["log"])
        log.insert(0, "phase", phase["phase"])
        log["step"] = log["iteration"] + offset
        offset = int(log["step"].max()) if len(log) else offset
        frames.append(log)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LOSS_COLUMNS)
    return table[LOSS_COLUMNS]


def unet_size_bytes(pipeline_dir: str | Path) -> int:
    """Bytes of the saved UNet weights (what the student costs on disk)."""
    return sum(f.stat().st_size for f in (Path(pipeline_dir) / "unet").glob("*.safetensors"))


def summary(name: str, method: str, teacher: str, report: dict, unet, teacher_unet, pipeline_dir) -> dict:
    """What the report and the table read about a student: size, parameters, training cost, loss."""
    from .bksdm import parameter_count

    phases = report["phases"]
    return {
        "student": name, "method": method, "teacher": teacher, "description": report.get("method", method),
        "parametrisation": report.get("parametrisation"),
        "parameters": parameter_count(unet), "teacher_parameters": parameter_count(teacher_unet),
        "unet_bytes": unet_size_bytes(pipeline_dir),
        "iterations": int(sum(p["iterations"] for p in phases)),
        "train_seconds": float(sum(p["seconds"] for p in phases)),
        "loss_start": phases[0]["loss_start"], "loss_end": phases[-1]["loss_end"],
        "phases": [{k: v for k, v in p.items() if k != "log"} for p in phases],
        "settings": json.loads(json.dumps(report.get("settings", {}), default=list)),
    }
