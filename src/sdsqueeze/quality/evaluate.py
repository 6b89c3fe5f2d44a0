"""The metrics jobs' logic: per-image metrics of one variant, distribution metrics of all.

A metric whose weights cannot be resolved keeps its column (NaN) and gets a ``<metric>_status``
saying ``unavailable: <reason>``; it is never filled with zeros and never dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import images as metrics
from .verdicts import OK
from .weights import WeightsUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The ``metrics`` config section plus the device the metrics networks run on."""

    weights_dir: str | None = None
    download: bool = True
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    coco_images: str | None = None
    is_splits: int = 10
    batch_size: int = 16
    device: str = "cpu"

    @classmethod
    def from_config(cls, config: dict) -> Settings:
        m = config.get("metrics", {})
        keys = {k: m[k] for k in ("weights_dir", "download", "clip_model", "clip_pretrained",
                                  "coco_images", "is_splits", "batch_size") if k in m}
        return cls(**keys, device=config.get("device", "cpu"))

    def resolved(self) -> Settings:
        """With ``auto``/``cuda`` turned into a usable torch device (clear error without CUDA)."""
        from dataclasses import replace

        from ..config import resolve_device

        return replace(self, device=resolve_device(self.device))


def unavailable(err: Exception) -> str:
    return f"unavailable: {err}"


def per_image_quality(variant_dirs, reference_dirs, prompts: pd.DataFrame,
                      settings: Settings) -> pd.DataFrame:
    """PSNR, SSIM, LPIPS against the reference image of the same seed; CLIP score and prompt
    adherence vs the prompt."""
    from .adherence import adherence_table
    from .clip import clip_scores, load_clip
    from .perceptual import load_lpips, lpips_distances

    table = metrics.per_image_quality(variant_dirs, reference_dirs, prompts)
    pairs = metrics.paired_images(variant_dirs, reference_dirs)
    table = table.merge(pairs[metrics.KEYS + ["path", "path_ref"]], on=metrics.KEYS, validate="one_to_one")

    try:
        model = load_lpips(settings.weights_dir, settings.download)
        table["lpips"] = lpips_distances(model, list(table.path), list(table.path_ref),
                                         settings.batch_size, settings.device)
        table["lpips_status"] = OK
    except WeightsUnavailable as err:
        log.warning("LPIPS %s", unavailable(err))
        table["lpips"], table["lpips_status"] = np.nan, unavailable(err)

    texts = prompts.set_index("prompt_id").prompt.loc[table.prompt_id].tolist()
    try:
        scorer = load_clip(settings.clip_model, settings.clip_pretrained, settings.weights_dir,
                           settings.download, settings.device)
        table["clip_score"] = clip_scores(scorer, table.path, texts, settings.device)
        table["clip_score_status"] = OK
        table["clip_model"] = scorer.name
    except WeightsUnavailable as err:
        log.warning("CLIP score %s", unavailable(err))
        table["clip_score"], table["clip_score_status"] = np.nan, unavailable(err)
        table["clip_model"] = f"{settings.clip_model}/{settings.clip_pretrained}"
    table = table.join(adherence_table(table.path, texts, index=table.index))
    return table.drop(columns=["path", "path_ref"])


def coco_paths(prompts: pd.DataFrame, coco_images: str | Path) -> list[Path]:
    """val2017 file of each selected prompt's COCO image (``{image_id:012d}.jpg``), each once."""
    if "image_id" not in prompts:
        raise ValueError("the prompt set has no image_id column; FID against COCO needs COCO prompts")
    paths = [Path(coco_images) / f"{int(i):012d}.jpg" for i in sorted(prompts.image_id.unique())]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(paths)} COCO images missing, e.g. {missing[0]}")
    return paths


def square_resized(paths: list[Path], size: int, out_dir: Path) -> list[Path]:
    """COCO photos center-cropped to a square and resized (PIL bicubic) to the generated size,
    written as PNG so they enter the Inception network exactly as generated images do."""
    from PIL import Image, ImageOps

    out = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in paths:
        image = ImageOps.fit(Image.open(path).convert("RGB"), (size, size), Image.Resampling.BICUBIC)
        target = out_dir / (path.stem + ".png")
        image.save(target)
        out.append(target)
    return out


def distribution_metrics(variant_dirs: dict[str, list], reference: str, prompts: pd.DataFrame,
                         settings: Settings, scratch: Path) -> pd.DataFrame:
    """One row per (variant, metric): FID vs the reference, FID vs COCO, Inception Score."""
    from .inception import frechet_distance, inception_outputs, inception_score, load_fid_inception

    images = {v: metrics.read_manifests(dirs, prompts).sort_values(metrics.KEYS).path.tolist()
              for v, dirs in variant_dirs.items()}
    rows = []

    def row(variant, metric, value=np.nan, std=np.nan, n_other=np.nan, status=OK):
        rows.append({"variant": variant, "metric": metric, "value": value, "std": std,
                     "n_images": len(images[variant]), "n_compared": n_other, "status": status})

    try:
        model = load_fid_inception(settings.weights_dir, settings.download)
    except WeightsUnavailable as err:
        for variant in images:
            for metric in ("fid_reference", "fid_coco", "inception_score"):
                row(variant, metric, status=unavailable(err))
        return pd.DataFrame(rows)

    outputs = {v: inception_outputs(model, paths, settings.batch_size, settings.device)
               for v, paths in images.items()}
    coco_features, coco_status = None, unavailable("metrics.coco_images not configured")
    if settings.coco_images:
        try:
            size = np.asarray(metrics.load_rgb(images[reference][0])).shape[0]
            real = square_resized(coco_paths(prompts, settings.coco_images), size, scratch / "coco")
            coco_features = inception_outputs(model, real, settings.batch_size, settings.device)[0]
            coco_status = OK
        except (ValueError, FileNotFoundError) as err:
            coco_status = unavailable(err)
    for variant, (pool3, logits) in outputs.items():
        reference_pool3 = outputs[reference][0]
        row(variant, "fid_reference", frechet_distance(pool3, reference_pool3), n_other=len(reference_pool3))
        if coco_features is not None:
            row(variant, "fid_coco", frechet_distance(pool3, coco_features), n_other=len(coco_features))
        else:
            row(variant, "fid_coco", status=coco_status)
        try:
            mean, std = inception_score(logits, settings.is_splits)
            row(variant, "inception_score", mean, std)
        except ValueError as err:
            row(variant, "inception_score", status=unavailable(err))
    return pd.DataFrame(rows)
