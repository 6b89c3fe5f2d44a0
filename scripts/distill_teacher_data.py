"""Entry point of rule distill_teacher_data: the teacher's samples on the training prompts, once."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import pandas as pd
import torch

from sdsqueeze import config, models, prompts, seeding, smk
from sdsqueeze.distill.teacher import build_teacher_data, training_prompts
from sdsqueeze.variants import prepare


def main(snakemake):
    p = snakemake.params
    torch.set_num_threads(snakemake.threads)
    device = config.resolve_device(p.device)
    coco = prompts.load_coco_captions(snakemake.input.captions)
    texts = training_prompts(coco, pd.read_csv(snakemake.input.prompts), p.n, p.seed, p.min_words, p.generic_phrases)
    texts = [t for t in texts for _ in range(p.samples_per_prompt)]
    seeds = [seeding.prompt_seed(p.seed + 1, i) for i in range(len(texts))]  # apart from the evaluation seeds
    pipe = models.load_materialized(snakemake.input.model, device=device, dtype=p.spec["dtype"])
    pipe.set_progress_bar_config(disable=True)
    teacher = prepare(pipe, p.spec).pipe  # the reference variant's sampler
    data = build_teacher_data(teacher, texts, seeds, steps=int(p.spec["steps"]), guidance=float(p.spec["guidance"]),
                              height=int(p.spec["height"]), width=int(p.spec["width"]), batch_size=p.batch_size)
    data.save(snakemake.output[0])


smk.run(snakemake, main)  # noqa: F821 - `snakemake` is injected by the script directive
