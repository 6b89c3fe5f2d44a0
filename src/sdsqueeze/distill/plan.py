"""The distill section's rules across keys, checked at config time (no torch imported).

``check_distill`` refuses, each with one message: a variant naming a student that is not
configured, a student naming a teacher that is neither the model nor another student (or a cycle of
them), a method's key on another method, a progressive schedule that does not halve, and a BK-SDM
removal of a block the teacher's UNet does not have (the teacher's layout is read without loading
weights: the tiny model's from its spec, a local or cached pipeline's from unet/config.json; a
hub model not cached yet is checked by the training job with the same message).
"""

from __future__ import annotations

import json
from pathlib import Path

METHOD_KEYS = {
    "progressive": {"schedule", "teacher_substeps", "guidance_range", "guidance_iterations", "guidance_mode"},
    "consistency": {"steps", "solver_substeps", "guidance_range", "ema_decay", "guidance_iterations", "sampler",
                    "guidance_mode"},
    "bksdm": {"remove", "output_kd_weight", "feature_kd_weight"},
}
COMMON_KEYS = {"method", "teacher", "iterations", "batch_size", "learning_rate", "checkpoint_every",
               "mixed_precision", "gradient_checkpointing"}


class DistillConfigError(ValueError):
    pass


def teacher_of(config: dict, student: str) -> str:
    """The name of a student's teacher: another student, or the configured model."""
    return config["distill"]["students"][student].get("teacher") or config["model"]["name"]


def students_in_training_order(config: dict) -> list[str]:
    """Students with every teacher before its students (refuses a missing teacher or a cycle)."""
    students = config["distill"]["students"]
    model = config["model"]["name"]
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise DistillConfigError(f"distill.students form a cycle of teachers: {' -> '.join((*chain, name))}")
        teacher = teacher_of(config, name)
        if teacher != model:
            if teacher not in students:
                raise DistillConfigError(
                    f"distill.students.{name}.teacher is {teacher!r}, which is neither the model "
                    f"({model!r}) nor a student; allowed: {', '.join([model, *sorted(set(students) - {name})])}")
            visit(teacher, (*chain, name))
        order.append(name)

    for name in sorted(students):
        visit(name, ())
    return order


def check_halving(name: str, schedule: list[int]) -> None:
    for before, after in zip(schedule, schedule[1:]):
        if before != 2 * after:
            raise DistillConfigError(
                f"distill.students.{name}.schedule {schedule} does not halve: {before} -> {after} "
                f"(each round distils two teacher steps into one student step; expected {before // 2})")


def model_unet_layout(model: dict) -> dict | None:
    """The configured model's UNet config (block layout) without loading weights; None when it
    cannot be read offline."""
    from ..models import TINY_SOURCE, TinySpec, is_local_pipeline

    source = model["source"]
    if source == TINY_SOURCE:
        arch = TinySpec().architecture()
        stages = len(arch.unet_channels)
        return {"block_out_channels": list(arch.unet_channels), "layers_per_block": arch.layers_per_block,
                "down_block_types": ["CrossAttnDownBlock2D"] * (stages - 1) + ["DownBlock2D"],
                "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (stages - 1),
                "mid_block_type": "UNetMidBlock2DCrossAttn"}
    if is_local_pipeline(source):
        path = Path(source) / "unet" / "config.json"
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "unet/config.json")
    except Exception:  # not a hub id the cache knows
        return None
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None


def unet_layout(config: dict, name: str, base: dict | None) -> dict | None:
    """The UNet layout of a model name (the model or a student), following BK-SDM removals."""
    if name == config["model"]["name"] or base is None:
        return base
    from .bksdm import student_config

    student = config["distill"]["students"][name]
    teacher_layout = unet_layout(config, teacher_of(config, name), base)
    if student["method"] != "bksdm" or teacher_layout is None:
        return teacher_layout
    return student_config(teacher_layout, student.get("remove") or ())


def check_distill(config: dict) -> None:
    """Raise DistillConfigError with one message for the first broken rule."""
    distill = config.get("distill") or {}
    students = distill.get("students") or {}
    for variant, spec in config["variants"].items():
        student = (spec or {}).get("student")
        if student is None:
            continue
        if not distill.get("enabled"):
            raise DistillConfigError(f"variants.{variant}.student is {student!r}, but distill.enabled is false")
        if student not in students:
            raise DistillConfigError(f"variants.{variant}.student is {student!r}, which is not a student; "
                                     f"configured: {', '.join(sorted(students)) or 'none'}")
    if not distill.get("enabled"):
        return
    for name, student in students.items():
        foreign = sorted(set(student) - COMMON_KEYS - METHOD_KEYS[student["method"]])
        if foreign:
            raise DistillConfigError(
                f"distill.students.{name}.{foreign[0]} is not a key of method {student['method']!r}; "
                f"its keys: {', '.join(sorted(METHOD_KEYS[student['method']]))}")
        if student["method"] == "progressive" and student.get("schedule"):
            check_halving(name, student["schedule"])
    order = students_in_training_order(config)
    base = model_unet_layout(config["model"])
    from .bksdm import RemovalError

    for name in order:
        try:
            unet_layout(config, name, base)
        except RemovalError as err:
            raise DistillConfigError(f"distill.students.{name}.{err}") from None
