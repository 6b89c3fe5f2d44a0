"""Test images: scikit-image's bundled photographs (offline), or any file, centre-cropped and resized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def load_image(name_or_path: str, size: int) -> np.ndarray:
    """HxWx3 uint8 at ``size`` x ``size``: a ``skimage.data`` name (astronaut, coffee, ...) or a file."""
    if Path(name_or_path).is_file():
        picture = Image.open(name_or_path).convert("RGB")
    else:
        from skimage import data

        loader = getattr(data, name_or_path, None)
        if loader is None or not callable(loader):
            raise ValueError(f"'{name_or_path}' is neither an image file nor a skimage.data image "
                             "(e.g. astronaut, coffee, chelsea, rocket)")
        picture = Image.fromarray(np.asarray(loader())).convert("RGB")
    side = min(picture.size)
    left, top = (picture.width - side) // 2, (picture.height - side) // 2
    picture = picture.crop((left, top, left + side, top + side))
    return np.asarray(picture.resize((size, size), Image.Resampling.LANCZOS))


def model_resolution(pipe) -> int:
    """The pixel size a UNet pipeline was trained at."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
