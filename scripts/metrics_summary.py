"""Entry point of rule metrics_summary: means with bootstrap intervals over prompts, paired
differences against the reference, and the timing table."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import pandas as pd

from sdsqueeze import io, smk
from sdsqueeze.quality import images as metrics
from sdsqueeze.quality import stats


def main(snakemake):
    p = snakemake.params
    per_image = pd.concat([pd.read_csv(f) for f in snakemake.input.per_image], ignore_index=True)
    names = [m for m in stats.PER_IMAGE_METRICS if m in per_image]
    summary = stats.summarize(per_image, names, p.confidence, p.resamples, p.seed)
    io.write_csv(snakemake.output.summary, summary)
    differences = stats.paired_differences(per_image, p.reference, names, p.confidence, p.resamples,
                                           p.seed, p.equivalence)
    io.write_csv(snakemake.output.differences, differences)
    timing = metrics.timing_table(metrics.read_manifests(snakemake.input.shards))
    io.write_csv(snakemake.output.timing, timing)


smk.run(snakemake, main)  # noqa: F821
