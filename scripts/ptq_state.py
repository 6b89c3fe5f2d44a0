"""Entry point of rule ptq_state: calibrate (and reconstruct) one ptq variant once, store its state."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from sdsqueeze import config, models, smk, variants
from sdsqueeze.quant import ptq


def main(snakemake):
    p = snakemake.params
    device = config.resolve_device(p.device)
    pipe = models.load_materialized(snakemake.input.model, device=device, dtype=p.spec["dtype"])
    prepared = variants.prepare(pipe, p.spec)
    ptq.save_state(pipe.unet, snakemake.output[0], prepared.notes["ptq"])


smk.run(snakemake, main)  # noqa: F821
