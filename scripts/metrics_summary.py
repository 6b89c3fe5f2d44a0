"""Entry point of rule metrics_summary: bootstrap intervals per variant, and the timing table."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import pandas as pd

from sdsqueeze import io, metrics, smk


def main(snakemake):
    p = snakemake.params
    per_image = pd.concat([pd.read_csv(f) for f in snakemake.input.per_image], ignore_index=True)
    summary = metrics.summarize(per_image, ["psnr", "ssim"], p.confidence, p.resamples, p.seed)
    io.write_csv(snakemake.output.summary, summary)
    timing = metrics.timing_table(metrics.read_manifests(snakemake.input.shards))
    io.write_csv(snakemake.output.timing, timing)


smk.run(snakemake, main)  # noqa: F821
