"""Entry point of rule prompts: COCO captions -> results/prompts/{promptset}.csv."""

import _srcpath  # noqa: F401,I001 - the workflow's src/ first on sys.path

from sdsqueeze import io, prompts, smk


def main(snakemake):
    p = snakemake.params
    coco = prompts.load_coco_captions(snakemake.input.captions)
    selected = prompts.select_prompts(coco, n=p.n, seed=p.seed, min_words=p.min_words,
                                      generic=p.generic_phrases, prefix=p.prefix, suffix=p.suffix)
    io.write_csv(snakemake.output[0], selected)


smk.run(snakemake, main)  # noqa: F821
