"""Entry point of rule diffc_decode: every .diffc of a shard back to pixels (plus the VAE ceiling)."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from pathlib import Path

from sdsqueeze import config, io, models, smk
from sdsqueeze.diffc import runs


def main(snakemake):
    p = snakemake.params
    device = config.resolve_device(p.device)
    pipe = models.load_materialized(snakemake.input.model, device=device, dtype=p.diffc["dtype"])
    with io.atomic_dir(snakemake.output[0]) as out:
        runs.decode_shard(pipe, Path(snakemake.input.encoded), out, redecode=p.diffc["redecode"])
        runs.write_provenance(out, {"diffc": p.diffc}, device)


smk.run(snakemake, main)  # noqa: F821
