"""Entry point of rule diffc_encode: one shard of images, every rate point, .diffc files on disk."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from sdsqueeze import config, io, models, smk
from sdsqueeze.diffc import runs


def main(snakemake):
    p = snakemake.params
    device = config.resolve_device(p.device)
    pipe = models.load_materialized(snakemake.input.model, device=device, dtype=p.diffc["dtype"])
    with io.atomic_dir(snakemake.output[0]) as out:
        runs.encode_shard(pipe, p.images, p.diffc, p.seed, out)
        runs.write_provenance(out, {"images": p.images, "diffc": p.diffc, "seed": p.seed}, device)


smk.run(snakemake, main)  # noqa: F821
