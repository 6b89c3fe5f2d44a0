"""Entry point of rule quant_sizes: bits-accounted UNet size of the reference and each ptq variant."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import json

from sdsqueeze import io, smk
from sdsqueeze.quant import ptq


def main(snakemake):
    model = json.loads(open(snakemake.input.model).read())
    unet = ptq.empty_unet(model["path"])
    table = ptq.size_table(unet, snakemake.params.specs, snakemake.params.reference)
    io.write_csv(snakemake.output[0], table)


smk.run(snakemake, main)  # noqa: F821
