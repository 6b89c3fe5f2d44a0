"""Entry point of rule metrics_distribution: FD-EffNetLite0, FID (vs reference, vs COCO) and IS of every variant."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import tempfile
from pathlib import Path

import pandas as pd

from sdsqueeze import io, smk
from sdsqueeze.quality import images as metrics
from sdsqueeze.quality import evaluate


def main(snakemake):
    p = snakemake.params
    settings = evaluate.Settings.from_config(p.config).resolved()
    shards = metrics.read_manifests(snakemake.input.shards)
    dirs = {v: sorted({str(Path(f).parent) for f in shards[shards.variant == v].path}) for v in p.variants}
    prompts = pd.read_csv(snakemake.input.prompts)
    with tempfile.TemporaryDirectory() as scratch:
        table = evaluate.distribution_metrics(dirs, p.reference, prompts, settings, Path(scratch),
                                              p.confidence, p.resamples, p.seed)
    io.write_csv(snakemake.output[0], table)


# Not alone on a shared GPU: mostly CPU work (image decoding, PSNR/SSIM) and light network passes, which
# would otherwise queue behind every generation job for the device.
smk.run(snakemake, main, exclusive_gpu=False)  # noqa: F821
