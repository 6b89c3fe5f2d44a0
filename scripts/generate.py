"""Entry point of rule generate: one variant, one prompt shard."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import pandas as pd

from sdsqueeze import config, generate, models, prompts, smk


def main(snakemake):
    p = snakemake.params
    device = config.resolve_device(p.device)
    all_prompts = pd.read_csv(snakemake.input.prompts)
    shard = prompts.shard_of(all_prompts, int(snakemake.wildcards.shard), p.shard_size)
    pipe = models.load_materialized(snakemake.input.model, device=device, dtype=p.spec["dtype"])
    generate.generate_shard(pipe, p.spec, shard, snakemake.output[0], device=device,
                            samples_per_prompt=p.samples_per_prompt)


smk.run(snakemake, main, exclusive_gpu=False)  # noqa: F821 - the timed batches take the GPU alone
