"""Entry point of rule metrics_variant: per-image PSNR/SSIM of one variant against the reference."""

from sdsqueeze import io, metrics, smk


def main(snakemake):
    table = metrics.per_image_quality(snakemake.input.variant, snakemake.input.reference)
    io.write_csv(snakemake.output[0], table)


smk.run(snakemake, main)  # noqa: F821
