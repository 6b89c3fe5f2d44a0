"""Entry point of rule metrics_variant: per-image PSNR/SSIM of one variant against the reference."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from sdsqueeze import io, metrics, smk


def main(snakemake):
    table = metrics.per_image_quality(snakemake.input.variant, snakemake.input.reference)
    io.write_csv(snakemake.output[0], table)


smk.run(snakemake, main)  # noqa: F821
