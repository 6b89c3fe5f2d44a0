"""Quality of each compressed run against the uncompressed image of the same (prompt, seed).

Two conventions, named in the CSV: ``gray`` (Compression-Inference's: 8-bit luma via PIL's ``convert("L")``,
ITU-R 601-2, then scikit-image PSNR/SSIM) and ``rgb`` (scikit-image on the 8-bit RGB image,
SSIM averaged over channels, as in the rest of sd-squeeze). LPIPS (AlexNet) where its weights
resolve through ``metrics.weights_dir``/``metrics.download`` (as for the metrics stage);
otherwise the column holds ``unavailable: <reason>``, logged once per job.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import intermediates
from ..quality import images as base_metrics

log = logging.getLogger(__name__)


def load_gray(path: str | Path) -> np.ndarray:
    return intermediates.load_image(path, "L")


def gray_scores(reference: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = (float("inf") if np.array_equal(reference, image)
            else float(peak_signal_noise_ratio(reference, image, data_range=255)))
    return psnr, float(structural_similarity(reference, image, data_range=255))


class Lpips:
    """LPIPS (AlexNet) when its backbone weights can be loaded here; the reason when not."""

    def __init__(self, device: str = "cpu", weights_dir: str | None = None, download: bool = True):
        from ..quality.perceptual import load_lpips
        from ..quality.weights import WeightsUnavailable

        self.model, self.reason, self.device = None, "", device
        try:
            self.model = load_lpips(weights_dir, download).to(device)
        except WeightsUnavailable as err:
            self.reason = f"unavailable: {err}"
            log.warning("LPIPS %s", self.reason)

    def __call__(self, reference: np.ndarray, image: np.ndarray):
        if self.model is None:
            return self.reason
        import torch

        def tensor(a):  # lpips expects NCHW in [-1, 1]
            return torch.from_numpy(a).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(self.device)

        with torch.inference_mode():
            return float(self.model(tensor(reference), tensor(image)).item())


def score_shard(shard_dir: str | Path, lpips_scorer: Lpips | None = None) -> pd.DataFrame:
    """Per-run rows: the shard's runs.csv (grid point, bits) plus the quality columns."""
    shard_dir = Path(shard_dir)
    runs = intermediates.read_table(shard_dir / "runs.csv")
    lpips_scorer = lpips_scorer or Lpips()
    rows = []
    for run in runs.itertuples():
        ref_rgb = base_metrics.load_rgb(shard_dir / run.reference)
        rgb = base_metrics.load_rgb(shard_dir / run.file)
        psnr_gray, ssim_gray = gray_scores(load_gray(shard_dir / run.reference),
                                           load_gray(shard_dir / run.file))
        rows.append({"psnr_gray_db": psnr_gray, "ssim_gray": ssim_gray,
                     "psnr_rgb_db": base_metrics.psnr(ref_rgb, rgb),
                     "ssim_rgb": base_metrics.ssim(ref_rgb, rgb),
                     "lpips_alex": lpips_scorer(ref_rgb, rgb)})
    scored = pd.concat([runs, pd.DataFrame(rows, index=runs.index)], axis=1)
    scored.insert(0, "shard", shard_dir.name)
    return scored
