"""Entry point of rule sweep_collect: one tidy CSV for the whole sweep, and its UNet evaluations."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import pandas as pd

from sdsqueeze import io, smk
from sdsqueeze.sweep import runner


def main(snakemake):
    frames = [pd.read_csv(path) for path in snakemake.input.metrics]
    io.write_csv(snakemake.output.csv, pd.concat(frames, ignore_index=True))
    io.write_json(snakemake.output.evaluations, runner.total_evaluations(snakemake.input.shards))


smk.run(snakemake, main)  # noqa: F821
