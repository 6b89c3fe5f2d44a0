"""Entry point of rule report: results/report/index.html and its figures."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import shutil
from pathlib import Path

from sdsqueeze import smk
from sdsqueeze.report import build_report


def main(snakemake):
    inputs = {name: list(snakemake.input[name]) if not isinstance(snakemake.input[name], str)
              else [snakemake.input[name]] for name in snakemake.input.keys()}
    Path(snakemake.output.figures).mkdir(parents=True, exist_ok=True)  # declared even when empty
    build_report(inputs, snakemake.params.config, snakemake.output.html,
                 commands=[snakemake.params.command])
    shutil.copyfile(snakemake.input.summary, snakemake.output.summary_table)


smk.run(snakemake, main)  # noqa: F821
