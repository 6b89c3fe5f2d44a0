"""Test images: scikit-image's bundled photographs (offline), or any file, centre-cropped and resized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# skimage.data also holds non-image callables (download_all, file_hash, ...) and loaders that
# download; only these bundled photographs are taken by name.
PHOTOGRAPHS = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "grass",
               "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina",
               "rocket", "text")


def unknown_images(names: list[str], base: Path | str = ".") -> list[str]:
    """The entries that are neither an existing image file (relative to ``base``) nor a photograph name."""
    return [n for n in names if n not in PHOTOGRAPHS and not (Path(base) / n).is_file()]


def check_image_names(names: list[str], base: Path | str = ".") -> None:
    """Refuse unknown entries before any job runs (the workflow calls this at config check)."""
    unknown = unknown_images(names, base)
    if unknown:
        raise ValueError(f"invalid config: diffc.images {unknown} are neither image files nor "
                         f"scikit-image photographs ({', '.join(PHOTOGRAPHS)})")


def load_image(name_or_path: str, size: int) -> np.ndarray:
    """HxWx3 uint8 at ``size`` x ``size``: a ``skimage.data`` photograph name or an image file."""
    if Path(name_or_path).is_file():
        picture = Image.open(name_or_path).convert("RGB")
    else:
        check_image_names([name_or_path])
        from skimage import data

        picture = Image.fromarray(np.asarray(getattr(data, name_or_path)())).convert("RGB")
    side = min(picture.size)
    left, top = (picture.width - side) // 2, (picture.height - side) // 2
    picture = picture.crop((left, top, left + side, top + side))
    return np.asarray(picture.resize((size, size), Image.Resampling.LANCZOS))


def model_resolution(pipe) -> int:
    """The pixel size a UNet pipeline was trained at."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
