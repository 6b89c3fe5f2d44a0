"""Entry point of rule materialize_model: the tiny model with its trained (or seeded) weights, the
seeded SD 1.5, or a hub id / local path resolved."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from pathlib import Path

from sdsqueeze import config, io, models, smk, uncond


def main(snakemake):
    source = snakemake.params.source
    out_json = Path(snakemake.output[0])
    record = {"source": source, "name": snakemake.wildcards.model}
    if source == models.TINY_SOURCE:
        spec = models.TinySpec(seed=snakemake.params.tiny_seed, image_size=snakemake.params.tiny_image_size)
        weights = snakemake.input.get("weights")  # absent for seeded weights
        pipeline_dir = out_json.parent / "pipeline"
        training: dict = {}
        with io.atomic_dir(pipeline_dir) as tmp:
            models.save_tiny_pipeline(tmp, spec, weights, training)
        record.update(path=str(pipeline_dir), tiny_spec=spec.__dict__, tiny_weights=snakemake.params.tiny_weights)
        if weights:
            record.update(weights=f"trained on the shapes domain ({weights})",
                          weights_sha256=training["weights_sha256"],
                          training={k: v for k, v in training.items() if k not in ("vae", "unet")})
        else:
            record.update(weights="seeded")
    elif source == models.TINY_UNCOND_SOURCE:
        vae_steps, unet_steps = snakemake.params.tiny_fit
        spec = uncond.UncondSpec(seed=snakemake.params.tiny_seed, image_size=snakemake.params.tiny_image_size,
                                 vae_fit_steps=vae_steps, unet_fit_steps=unet_steps)
        pipeline_dir = out_json.parent / "pipeline"
        fit_report: dict = {}
        with io.atomic_dir(pipeline_dir) as tmp:
            uncond.save_tiny_uncond_pipeline(tmp, spec, fit_report)
        record.update(path=str(pipeline_dir), weights="seeded, fitted on skimage photographs' latents",
                      uncond_spec=spec.__dict__, fit=fit_report)
    elif source == models.SD15_SEEDED_SOURCE:
        pipeline_dir = out_json.parent / "pipeline"
        device = config.resolve_device(snakemake.params.device)
        with io.atomic_dir(pipeline_dir) as tmp:
            models.save_sd15_seeded(tmp, seed=snakemake.params.tiny_seed, device=device)
        record.update(path=str(pipeline_dir), weights=models.SEEDED_WEIGHTS_NOTE, seed=snakemake.params.tiny_seed,
                      built_on=device)
    else:
        record.update(path=models.fetch_pipeline(source), weights="pretrained")
    io.write_json(out_json, record)


smk.run(snakemake, main)  # noqa: F821 - `snakemake` is injected by the script directive
