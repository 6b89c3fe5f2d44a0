"""Entry point of rule distill_student: train one student (resuming from its last checkpoint) and
save it as a diffusers pipeline with a record beside it."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import shutil
from pathlib import Path

import torch

from sdsqueeze import config, io, models, smk
from sdsqueeze.distill import students
from sdsqueeze.distill.teacher import TeacherData


def main(snakemake):
    p = snakemake.params
    torch.set_num_threads(snakemake.threads)
    device = config.resolve_device(p.device)
    method = p.student["method"]
    pipe = models.load_materialized(snakemake.input.teacher, device=device, dtype="float32")
    pipe.set_progress_bar_config(disable=True)
    data = TeacherData.load(snakemake.input.teacher_data)
    settings = students.trainer_settings(method, p.student, p.seed)
    # Checkpoints live in a folder named by everything the training depends on, so a rerun after
    # a change of settings, code or teacher data starts afresh instead of resuming stale weights.
    teacher_data = Path(snakemake.input.teacher_data).stat()
    key = io.stable_hash({"student": p.student, "seed": p.seed, "code": p.code, "teacher": p.teacher,
                          "teacher_data": [teacher_data.st_size, teacher_data.st_mtime_ns]})
    unet, scheduler_config, report = students.train(method, pipe, data, settings, Path(p.work) / key)
    out = snakemake.output
    with io.atomic_dir(out.pipeline) as tmp:
        students.save_student(pipe, unet, scheduler_config, tmp)
    io.write_csv(out.loss, students.loss_table(report))
    summary = students.summary(snakemake.wildcards.student, method, p.teacher, report, unet, pipe.unet, out.pipeline)
    io.write_json(out.summary, summary)
    io.write_json(out.record, {"name": snakemake.wildcards.student, "path": out.pipeline, "student": True,
                               "method": method, "teacher": p.teacher, "weights": "distilled"})
    shutil.rmtree(p.work)  # the checkpoints served resuming only; the student is saved


smk.run(snakemake, main)  # noqa: F821 - `snakemake` is injected by the script directive
