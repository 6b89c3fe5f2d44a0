"""Entry point of rule metrics_variant: per-image PSNR, SSIM, LPIPS (vs the reference) and CLIP score."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import pandas as pd

from sdsqueeze import io, smk
from sdsqueeze.quality import evaluate


def main(snakemake):
    settings = evaluate.Settings.from_config(snakemake.params.config).resolved()
    prompts = pd.read_csv(snakemake.input.prompts)
    table = evaluate.per_image_quality(snakemake.input.variant, snakemake.input.reference, prompts, settings)
    io.write_csv(snakemake.output[0], table)


# Not alone on a shared GPU: mostly CPU work (image decoding, PSNR/SSIM) and light network passes, which
# would otherwise queue behind every generation job for the device.
smk.run(snakemake, main, exclusive_gpu=False)  # noqa: F821
