"""Entry point of rule sweep_fit: Compression-Inference's sigmoid surface, from the sweep CSV alone."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import logging

import pandas as pd

from sdsqueeze import io, smk
from sdsqueeze.sweep import fit

log = logging.getLogger("sweep_fit")


def main(snakemake):
    runs = pd.read_csv(snakemake.input[0])
    options = snakemake.params.fit
    result = fit.fit_surface(runs, options["convention"], options["psnr_cap_db"],
                             min_r2=options["min_r2"], resamples=options["bootstrap"])
    for reason in result["not_identified_because"]:
        log.warning("surface not identified: %s", reason)
    io.write_json(snakemake.output.fit, result)
    fit.plot_fit(runs, result, snakemake.output.residuals, snakemake.output.surface,
                 snakemake.output.heatmap)


smk.run(snakemake, main)  # noqa: F821
