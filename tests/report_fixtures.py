"""A small but complete set of metric files, as the metrics rules write them, for report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from quality_fixtures import smooth_images, write_shard

from sdsqueeze import config as sq_config
from sdsqueeze import io
from sdsqueeze.quality import images as metrics
from sdsqueeze.quality import stats
from sdsqueeze.variants import resolve_variant

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_MISSING = "unavailable: pt_inception-2015-12-05-6726825d.pth: metrics.weights_dir not set; download disabled"


def default_config() -> dict:
    return sq_config.validate(yaml.safe_load((ROOT / "config.yaml").read_text()))


def embedded_distill_config() -> dict:
    """config.yaml with the overlay config/distill-embedded.yaml, merged as Snakemake merges
    ``--configfile`` overlays."""
    from snakemake.utils import update_config

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    update_config(config, yaml.safe_load((ROOT / "config" / "distill-embedded.yaml").read_text()))
    return sq_config.validate(config)


def write_latents(shard: Path, files) -> None:
    """Final latents as the generate rule stores them (same for every variant here)."""
    import torch
    from safetensors.torch import save_file

    save_file({f: torch.ones(4, 8, 8) * i for i, f in enumerate(files)}, str(shard / "latents.safetensors"))


def adherence_columns(table: pd.DataFrame, variant: str, config: dict, measured: bool, rng) -> pd.DataFrame:
    """Per-image adherence: unstated (prompts outside the shapes domain) or measured, where the
    reference and fp32-sdpa get every attribute right, w4a8-nocal no colour, others miss a few."""
    from sdsqueeze.quality.adherence import NOTHING_STATED
    from sdsqueeze.quality.verdicts import ADHERENCE_METRICS, ADHERENCE_STATUS

    if not measured:
        table[list(ADHERENCE_METRICS)] = np.nan
        table[ADHERENCE_STATUS] = NOTHING_STATED
        return table
    perfect = variant in (config["reference"], "fp32-sdpa")
    for metric in ADHERENCE_METRICS[1:]:
        right = np.ones(len(table)) if perfect else (rng.random(len(table)) > 0.1).astype(float)
        table[metric] = 0.0 if variant == "w4a8-nocal" and metric == "adherence_colour" else right
    table["adherence_position"] = np.where(table.prompt_id % 3 == 0, np.nan, table.adherence_position)  # unstated
    table["adherence_overall"] = table[list(ADHERENCE_METRICS[1:])].fillna(1).min(axis=1)
    table[ADHERENCE_STATUS] = "ok"
    return table


def write_report_inputs(root: Path, config: dict, n: int = 6, adherence: bool = False) -> dict[str, list[str]]:
    """Shards, prompts, per-image CSVs, summary/differences/timing/distribution for every variant;
    prompt adherence measured (shapes prompts) or unavailable (prompts outside the domain)."""
    reference = config["reference"]
    variants = sorted(config["variants"])
    prompt_ids = list(range(1, n + 1))
    seeds = [100 + p for p in prompt_ids]
    base = smooth_images(n, 64, seed=3)
    rng = np.random.default_rng(0)
    shards, per_image = [], []
    for k, variant in enumerate(variants):
        noise = 0 if variant in (reference, "fp32-sdpa") else 8 * k
        images = np.clip(base.astype(int) + rng.integers(-noise - 1, noise + 1, base.shape), 0, 255).astype(np.uint8)
        if noise == 0:
            images = base
        shard = write_shard(root / "images" / variant / "shard-0", variant, images, prompt_ids, seeds)
        manifest = pd.read_csv(shard / "manifest.csv")
        write_latents(shard, manifest.file)
        steps = resolve_variant(config, variant)["steps"]
        manifest["batch_index"] = [i * 2 // n for i in range(n)]  # two timed batches = two repeats
        manifest["cpu_seconds"] = 0.06 * steps * (1 + 0.01 * manifest.batch_index)
        # wall time: CPU time plus a shared machine's noise; ddim-10's repeats disagree by 40%
        jitter = 0.4 if variant == "ddim-10" else 0.02
        manifest["seconds"] = manifest.cpu_seconds * (1.1 + jitter * manifest.batch_index)
        manifest["warmup_seconds"] = 2.0
        manifest["peak_memory_mb"] = 1000 - 50 * k
        manifest.to_csv(shard / "manifest.csv", index=False)
        shards.append(str(shard))
    for variant, shard in zip(variants, shards):
        table = metrics.per_image_quality([shard], [shards[variants.index(reference)]])
        table["lpips"] = np.nan
        table["lpips_status"] = "unavailable: alexnet-owt-7be5be79.pth: metrics.weights_dir not set"
        # paired like real CLIP scores: the prompt sets the level, the variant's changes move it
        same = variant in (reference, "fp32-sdpa")
        table["clip_score"] = 25 + np.sin(table.prompt_id) + (0 if same else rng.normal(0, 1, len(table)))
        table["clip_score_status"] = "ok"
        table = adherence_columns(table, variant, config, adherence, rng)
        per_image.append(table)
        io.write_csv(root / "per_image" / f"{variant}.csv", table)
    frame = pd.concat(per_image, ignore_index=True)
    names = stats.PER_IMAGE_METRICS
    io.write_csv(root / "summary.csv", stats.summarize(frame, names, 0.95, 300, 0))
    io.write_csv(root / "differences.csv", stats.paired_differences(frame, reference, names, 0.95, 300, 0))
    io.write_csv(root / "timing.csv", metrics.timing_table(metrics.read_manifests(shards)))
    dist = pd.DataFrame([{"variant": v, "metric": m, "value": np.nan, "std": np.nan, "n_images": n,
                          "n_compared": np.nan, "status": WEIGHTS_MISSING}
                         for v in variants for m in ("fid_reference", "fid_coco", "inception_score")])
    io.write_csv(root / "distribution.csv", dist)
    pd.DataFrame({"prompt_id": prompt_ids, "image_id": prompt_ids, "caption": "c",
                  "prompt": [f"prompt <{p}> & co" for p in prompt_ids], "seed": seeds}).to_csv(
        root / "prompts.csv", index=False)
    return {
        "summary": [str(root / "summary.csv")], "timing": [str(root / "timing.csv")],
        "differences": [str(root / "differences.csv")], "distribution": [str(root / "distribution.csv")],
        "per_image": [str(root / "per_image" / f"{v}.csv") for v in variants],
        "shards": shards, "prompts": [str(root / "prompts.csv")],
    }
