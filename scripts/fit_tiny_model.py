"""Entry point of rule fit_tiny_model: retrain the embedded model's weights (sdsqueeze.tinytrain)."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from pathlib import Path

from sdsqueeze import io, models, smk, tinytrain


def main(snakemake):
    settings = tinytrain.TrainSettings(seed=snakemake.params.tiny_seed, image_size=snakemake.params.tiny_image_size,
                                       device=snakemake.params.device, **snakemake.params.fit)
    spec = models.TinySpec(seed=settings.seed, image_size=settings.image_size)
    pipe = models.build_tiny_pipeline(spec)
    report = tinytrain.train_tiny_pipeline(pipe, settings)
    report["command"] = f"snakemake rule fit_tiny_model, model.tiny_fit = {snakemake.params.fit}"
    report["tiny_spec"] = spec.__dict__
    with io.atomic_dir(Path(snakemake.output[0])) as tmp:
        tinytrain.save_weights(pipe, tmp, report)


smk.run(snakemake, main)  # noqa: F821 - `snakemake` is injected by the script directive
