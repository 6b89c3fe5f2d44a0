"""Entry point of rule sample_list: an unconditional model's seeded sample list -> results/prompts/{name}.csv."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from sdsqueeze import io, prompts, smk


def main(snakemake):
    io.write_csv(snakemake.output[0], prompts.sample_list(snakemake.params.n, snakemake.params.seed))


smk.run(snakemake, main)  # noqa: F821
