"""Entry point of rule sweep_generate: one shard of (prompt, seed) trajectories and their runs."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import pandas as pd

from sdsqueeze import config, models, smk
from sdsqueeze.sweep import plan, runner


def main(snakemake):
    p = snakemake.params
    device = config.resolve_device(p.device)
    grid = plan.grid_from_config(snakemake.config)
    prompts = pd.read_csv(snakemake.input.prompts)
    pipe = models.load_materialized(snakemake.input.model, device=device, dtype=p.spec["dtype"])
    spec = {**p.spec, "steps": grid.num_inference_steps}
    runner.render_shard(pipe, spec, grid, int(snakemake.wildcards.shard), prompts,
                        snakemake.output[0], device=device)


smk.run(snakemake, main)  # noqa: F821
