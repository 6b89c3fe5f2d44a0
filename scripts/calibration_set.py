"""Entry point of rule calibration_set: one calibration set (kind and size) for one model."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

import pandas as pd

from sdsqueeze import config, io, models, prompts, smk, variants
from sdsqueeze.quant import calibration


def main(snakemake):
    p = snakemake.params
    device = config.resolve_device(p.device)
    settings = calibration.CalibrationSettings(
        kind=p.kind, samples=p.settings["samples"], cali_n=p.settings["cali_n"],
        cali_st=p.settings["cali_st"], images=p.settings["images"], seed=p.seed)
    texts = []  # an unconditional model's sets hold no text
    if snakemake.input.captions:
        coco = prompts.load_coco_captions(snakemake.input.captions)
        evaluation = pd.read_csv(snakemake.input.prompts)
        filters = p.prompt_filters
        texts = calibration.calibration_prompts(
            coco, evaluation, settings.n_prompts, p.seed, filters["min_words"],
            filters["generic_phrases"], filters["prefix"], filters["suffix"])
    pipe = models.load_materialized(snakemake.input.model, device=device, dtype=p.generation["dtype"])
    variants.prepare(pipe, p.generation)  # the reference's scheduler and attention, unquantized
    tensors = calibration.build(pipe, settings, texts, p.generation)
    record = {"kind": p.kind, "settings": vars(settings), "generation": p.generation}
    calibration.save(tensors, snakemake.output.tensors, {"kind": p.kind, "samples": len(tensors["sample"])})
    io.write_json(snakemake.output.provenance, io.provenance(
        record, device, prompts=texts, samples=len(tensors["sample"]),
        timesteps=sorted(set(tensors["timestep"].tolist())),
        shapes={k: list(v.shape) for k, v in tensors.items()}))


smk.run(snakemake, main)  # noqa: F821
