"""What the Snakemake jobs and the CLI do: encode/decode image shards to files on disk, and score them."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import intermediates, io
from . import images, rcc
from .bitstream import DiffcFormatError
from .codec import DiffcError, DiffcSettings, DiffusionModel, decode, encode_rate_points

ORIGINAL = "original.png"


def rate_file(image: str, recon_timestep: int, suffix: str = ".diffc") -> str:
    return f"{image}/t{recon_timestep:04d}{suffix}"


def shard_images(image_names: list[str], shard: int | str, shard_size: int) -> list[str]:
    """The images of one encode/decode job."""
    return image_names[int(shard) * shard_size:(int(shard) + 1) * shard_size]


def image_label(name_or_path: str) -> str:
    """Folder name of an image: the skimage.data name, or a file's stem."""
    return Path(name_or_path).stem


def image_seed(global_seed: int, image: str) -> int:
    """Each image its own coding seed, derived from the global one."""
    return rcc.derive_seed(global_seed, "image", image) & 0xFFFFFFFF


def settings_from_config(cfg: dict, seed: int) -> DiffcSettings:
    return DiffcSettings(step_stride=cfg["step_stride"], max_chunk_bits=cfg["max_chunk_bits"],
                         margin_bits=cfg["margin_bits"], denoise_steps=cfg["denoise_steps"],
                         block_rows_log2=cfg["block_rows_log2"], seed=seed,
                         self_check=cfg.get("self_check", True))


def encode_shard(pipe, image_names: list[str], cfg: dict, global_seed: int, out_dir: Path) -> None:
    """Per image: the resized original, one .diffc per rate point, a manifest and per-step KLs."""
    model = DiffusionModel(pipe)
    size = cfg.get("size") or images.model_resolution(pipe)
    rows, steps = [], []
    for source in image_names:
        image, name = images.load_image(source, size), image_label(source)
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out_dir / name / ORIGINAL)
        seed = image_seed(global_seed, name)
        files, report = encode_rate_points(image, pipe, cfg["recon_timesteps"],
                                           settings_from_config(cfg, seed), model)
        logging.info("encoded %s in %.1f s: %s bytes", name, report.seconds,
                     {t: len(d) for t, d in files.items()})
        for t_r, data in files.items():
            (out_dir / rate_file(name, t_r)).write_bytes(data)
            rows.append({"image": name, "recon_timestep": t_r, "file": rate_file(name, t_r),
                         "bytes": len(data), "pixels": size * size, "bpp": 8 * len(data) / (size * size),
                         "kl_bits": sum(k for k, t in zip(report.kl_bits, report.timesteps) if t >= t_r),
                         "chunk_kl_excess_bits": max(e for e, t in zip(report.chunk_excess_bits,
                                                                        report.timesteps) if t >= t_r),
                         "seed": seed, "encode_seconds_all_rate_points": report.seconds})
        steps += [{"image": name, "timestep": t, "kl_bits": k, "chunks": c, "index_bits": b, "side_bits": sb,
                   "chunk_kl_excess_bits": e}
                  for t, k, c, b, sb, e in zip(report.timesteps, report.kl_bits, report.chunks,
                                               report.index_bits, report.side_bits, report.chunk_excess_bits)]
    pd.DataFrame(rows).to_csv(out_dir / "manifest.csv", index=False)
    pd.DataFrame(steps).to_csv(out_dir / "steps.csv", index=False)


def decode_file(path: Path, data: bytes, pipe, model: DiffusionModel):
    """(pixels, clean latent) of one file; any refusal is one line naming the file."""
    try:
        return decode(data, pipe, model, return_latent=True)
    except (DiffcError, DiffcFormatError) as err:
        raise DiffcError(f"{path}: {err}") from None


def latent_snr_db(x0, estimate) -> float:
    """10 log10(var(x0) / MSE): how close the decoded latent is, before the VAE decoder."""
    mse = float(((estimate - x0) ** 2).mean())
    return 10 * math.log10(float(x0.var()) / mse) if mse > 0 else math.inf


def decode_shard(pipe, encoded_dir: Path, out_dir: Path, redecode: str = "highest_rate") -> None:
    """Decode every .diffc of a shard to PNG; also the VAE-only ceiling of each original.

    ``redecode``: which files are decoded a second time to check the pixels repeat exactly
    (``all``, ``highest_rate`` = each image's file with the most steps, or ``none``).
    """
    model = DiffusionModel(pipe)
    manifest = intermediates.read_table(encoded_dir / "manifest.csv")
    rows = []
    for name in manifest.image.unique():
        original = intermediates.load_image(encoded_dir / name / ORIGINAL)
        x0 = model.image_to_latent(original)
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        ceiling = model.latent_to_image(x0)
        Image.fromarray(ceiling).save(out_dir / name / "vae.png")
        rows.append({"image": name, "method": "vae", "recon_timestep": 0, "png": f"{name}/vae.png",
                     "latent_snr_db": math.inf})
        entries = manifest[manifest.image == name]
        for entry in entries.itertuples():
            path = encoded_dir / entry.file
            data = path.read_bytes()
            start = time.perf_counter()
            pixels, latent = decode_file(path, data, pipe, model)
            seconds = time.perf_counter() - start
            identical = None
            if redecode == "all" or (redecode == "highest_rate"
                                     and entry.recon_timestep == entries.recon_timestep.min()):
                identical = bool(np.array_equal(pixels, decode_file(path, data, pipe, model)[0]))
            logging.info("decoded %s in %.1f s (repeat identical: %s)", entry.file, seconds, identical)
            png = rate_file(name, entry.recon_timestep, ".png")
            Image.fromarray(pixels).save(out_dir / png)
            rows.append({"image": name, "method": "diffc", "recon_timestep": entry.recon_timestep,
                         "file": entry.file, "png": png, "decode_seconds": seconds,
                         "redecode_identical": identical, "latent_snr_db": latent_snr_db(x0, latent)})
    pd.DataFrame(rows).to_csv(out_dir / "manifest.csv", index=False)


def lpips_scorer(device: str = "cpu", weights_dir: str | None = None, download: bool = True):
    """LPIPS (AlexNet, weights resolved as for the metrics stage); otherwise the reason it cannot run."""
    import torch

    from ..quality.perceptual import load_lpips
    from ..quality.weights import WeightsUnavailable

    try:
        net = load_lpips(weights_dir, download).to(device)
    except WeightsUnavailable as err:
        logging.warning("LPIPS unavailable: %s", err)
        return None, f"unavailable: {err}"

    def score(reference: np.ndarray, image: np.ndarray) -> float:
        def to_tensor(a):
            return torch.from_numpy(a).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)

        with torch.no_grad():
            return float(net(to_tensor(reference), to_tensor(image)))

    return score, None


def rate_distortion(model_name: str, encoded_dirs: list[Path], decoded_dirs: list[Path],
                    weights_dir: str | None = None, download: bool = True) -> pd.DataFrame:
    """One row per reconstruction: bits per pixel (from the file's size on disk) and quality."""
    from ..quality.images import load_rgb, psnr, ssim

    scorer, lpips_note = lpips_scorer(weights_dir=weights_dir, download=download)
    frames = []
    for enc, dec in zip(map(Path, encoded_dirs), map(Path, decoded_dirs)):
        encoded = intermediates.read_table(enc / "manifest.csv")
        decoded = intermediates.read_table(dec / "manifest.csv")
        rows = decoded.merge(encoded.drop(columns=["file"]), on=["image", "recon_timestep"], how="left")
        rows["lpips"] = pd.Series([None] * len(rows), dtype=object)
        for i, row in rows.iterrows():
            reference = load_rgb(enc / row.image / ORIGINAL)
            image = load_rgb(dec / row.png)
            if row.method == "diffc":
                size = (enc / row.file).stat().st_size
                if size != row.bytes:
                    raise RuntimeError(f"{row.file}: {size} bytes on disk, {row.bytes} in the manifest")
                rows.loc[i, "bpp"] = 8 * size / (reference.shape[0] * reference.shape[1])
            rows.loc[i, "psnr"] = psnr(reference, image)
            rows.loc[i, "ssim"] = ssim(reference, image)
            rows.loc[i, "lpips"] = scorer(reference, image) if scorer else lpips_note
        frames.append(rows)
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "model", model_name)
    return table


def write_provenance(out_dir: Path, params: dict, device: str, **extra) -> None:
    io.write_json(out_dir / "provenance.json", io.provenance(params, device, **extra))
