"""FID and Inception Score on the standard FID Inception network (pytorch-fid).

Protocol (as pytorch-fid's ``fid_score``): PNG -> RGB uint8 -> float in [0, 1]; pytorch-fid's
``InceptionV3`` resizes to 299x299 (bilinear, ``F.interpolate``, align_corners=False), scales to
[-1, 1] and returns the 2048-d pool3 features; FID = the Fréchet distance of their mean
and covariance (``np.cov(rowvar=False)``). IS uses the same network's 1008-way classifier without
its bias ("logits_unbiased", as the original TF code and torch-fidelity), softmax, and splits the
images in order into ``splits`` parts (original definition; the score is the mean over parts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from .weights import FID_INCEPTION, resolve_file

POOL3_DIMS = 2048


@dataclass
class FidInception:
    net: torch.nn.Module  # pytorch-fid's InceptionV3, pool3 block only
    fc_weight: torch.Tensor  # 1008 x 2048 classifier of the same checkpoint, for IS


def build_fid_inception(state_dict: dict) -> FidInception:
    """pytorch-fid's FID Inception with ``state_dict`` as its weights.

    pytorch-fid fetches its weights by URL inside the constructor; we hand it the already
    resolved state dict instead (patching the module attribute for the duration of the call,
    not the library's files), so the exact same architecture is built without the network.
    """
    from pytorch_fid import inception as pf

    with mock.patch.object(pf, "load_state_dict_from_url", lambda *args, **kwargs: state_dict):
        net = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[POOL3_DIMS]], resize_input=True,
                             normalize_input=True, use_fid_inception=True)
    return FidInception(net.eval(), state_dict["fc.weight"].detach().float())


def load_fid_inception(weights_dir: str | Path | None, download: bool) -> FidInception:
    """Raises ``WeightsUnavailable`` when the checkpoint can be neither found nor fetched."""
    path = resolve_file(FID_INCEPTION, weights_dir, download)
    return build_fid_inception(torch.load(path, map_location="cpu", weights_only=True))


@torch.inference_mode()
def inception_outputs(model: FidInception, paths: list[str | Path], batch_size: int = 16,
                      device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(pool3 features N x 2048, unbiased logits N x 1008), both float64."""
    from .images import images_tensor

    net = model.net.to(device)
    features = []
    for start in range(0, len(paths), batch_size):
        batch = images_tensor(paths[start:start + batch_size]).to(device)
        features.append(net(batch)[0].flatten(1).double().cpu())
    pool3 = torch.cat(features)
    logits = pool3 @ model.fc_weight.double().T
    return pool3.numpy(), logits.numpy()


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets: ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr sqrt(S_a S_b).

    pytorch-fid's ``calculate_frechet_distance`` takes ``scipy.linalg.sqrtm`` of a 2048 x 2048
    product: minutes on 2 cores, and inaccurate ("singular") whenever there are fewer images
    than dimensions. With S = Xc^T Xc / (n - 1) (Xc centred, n x d), the eigenvalues of S_a S_b
    are the squared singular values of Xc_a Xc_b^T / sqrt((n_a - 1)(n_b - 1)), so the trace
    term is exact from an n_a x n_b SVD. tests/unit/test_quality.py checks it against pytorch-fid.
    """
    if len(features_a) < 2 or len(features_b) < 2:
        raise ValueError("FID needs at least 2 images on each side")
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    centred_a, centred_b = a - a.mean(axis=0), b - b.mean(axis=0)
    scale_a, scale_b = len(a) - 1, len(b) - 1  # np.cov's normalisation, as pytorch-fid
    diff = a.mean(axis=0) - b.mean(axis=0)
    trace_a = np.square(centred_a).sum() / scale_a
    trace_b = np.square(centred_b).sum() / scale_b
    cross = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum() / np.sqrt(scale_a * scale_b)
    return float(diff @ diff + trace_a + trace_b - 2 * cross)


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, std over splits) of exp(E_x KL(p(y|x) || p(y))), in-order splits.

    Written out because pytorch-fid has no IS and torchmetrics' shuffles the images before
    splitting; the test checks it against torchmetrics with one split (where order is moot).
    """
    from scipy.special import rel_entr

    if len(logits) < splits:
        raise ValueError(f"IS with {splits} splits needs at least {splits} images, got {len(logits)}")
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1).numpy()
    n = len(probs)
    scores = []
    for i in range(splits):
        part = probs[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = rel_entr(part, marginal).sum(axis=1).mean()  # 0·log 0 = 0
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
