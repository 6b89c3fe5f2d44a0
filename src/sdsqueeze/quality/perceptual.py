"""LPIPS (lpips package, v0.1, AlexNet) of each image against its reference image.

The lpips package ships its linear heads but takes its AlexNet backbone from torchvision, which
downloads it; we build LPIPS with an uninitialised backbone and load torchvision's AlexNet
checkpoint resolved by ``weights.resolve_file`` (same file torchvision would cache).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .weights import ALEXNET, resolve_file


def build_lpips(alexnet_state_dict: dict) -> torch.nn.Module:
    import lpips

    model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    # lpips names AlexNet's feature layers "slice<k>.<index in features>"; torchvision "features.<index>".
    backbone = {key: alexnet_state_dict["features." + key.split(".", 1)[1]]
                for key in model.net.state_dict()}
    model.net.load_state_dict(backbone)
    return model.eval()


def load_lpips(weights_dir: str | Path | None, download: bool) -> torch.nn.Module:
    """Raises ``WeightsUnavailable`` when AlexNet's checkpoint can be neither found nor fetched."""
    path = resolve_file(ALEXNET, weights_dir, download)
    return build_lpips(torch.load(path, map_location="cpu", weights_only=True))


@torch.inference_mode()
def lpips_distances(model: torch.nn.Module, paths: list, reference_paths: list,
                    batch_size: int = 16, device: str = "cpu") -> np.ndarray:
    """LPIPS(image_i, reference_i) for every pair; inputs scaled from [0, 1] by lpips itself."""
    from .images import images_tensor

    model = model.to(device)
    out = []
    for start in range(0, len(paths), batch_size):
        images = images_tensor(paths[start:start + batch_size]).to(device)
        references = images_tensor(reference_paths[start:start + batch_size]).to(device)
        out.append(model(images, references, normalize=True).flatten().double().cpu())
    return torch.cat(out).numpy()
