"""Entry point of rule diffc_rd: bits per pixel against PSNR/SSIM/LPIPS for every reconstruction."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from sdsqueeze import io, smk
from sdsqueeze.diffc import runs


def main(snakemake):
    p = snakemake.params
    table = runs.rate_distortion(snakemake.wildcards.model, list(snakemake.input.encoded),
                                 list(snakemake.input.decoded), p.weights_dir, p.download)
    io.write_csv(snakemake.output.csv, table)


smk.run(snakemake, main)  # noqa: F821
