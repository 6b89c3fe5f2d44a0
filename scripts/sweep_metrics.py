"""Entry point of rule sweep_metrics: PSNR/SSIM (gray and RGB) and LPIPS of one shard's runs."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from sdsqueeze import config, io, smk
from sdsqueeze.sweep import quality


def main(snakemake):
    p = snakemake.params
    lpips = quality.Lpips(config.resolve_device(p.device), p.weights_dir, p.download)
    scored = quality.score_shard(snakemake.input[0], lpips)
    io.write_csv(snakemake.output[0], scored)


smk.run(snakemake, main)  # noqa: F821
