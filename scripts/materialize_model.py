"""Entry point of rule materialize_model: build the tiny model, or resolve a hub id / local path."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from pathlib import Path

from sdsqueeze import io, models, smk


def main(snakemake):
    source = snakemake.params.source
    out_json = Path(snakemake.output[0])
    record = {"source": source, "name": snakemake.wildcards.model}
    if source == models.TINY_SOURCE:
        spec = models.TinySpec(seed=snakemake.params.tiny_seed,
                               image_size=snakemake.params.tiny_image_size)
        pipeline_dir = out_json.parent / "pipeline"
        with io.atomic_dir(pipeline_dir) as tmp:
            models.save_tiny_pipeline(tmp, spec)
        record.update(path=str(pipeline_dir), weights="seeded", tiny_spec=spec.__dict__)
    else:
        record.update(path=models.fetch_pipeline(source), weights="pretrained")
    io.write_json(out_json, record)


smk.run(snakemake, main)  # noqa: F821 - `snakemake` is injected by the script directive
