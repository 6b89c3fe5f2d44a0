"""Command line, like the DiffC seed's compress.py / decompress.py, for any diffusers model.

    python -m sdsqueeze.diffc compress   --model PATH --image_dir DIR --output_dir OUT --recon_timestep 200
    python -m sdsqueeze.diffc decompress --model PATH --input_dir OUT --output_dir RECON

--model: a diffusers folder, a hub id in the local cache, a pipeline's model.json
(resources/models/<name>/model.json), or `tiny` (the embedded model with its committed weights, built in memory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_model(source: str, device: str, dtype: str):
    from ..models import load_pipeline, trained_tiny_pipeline

    if source == "tiny":  # the workflow's embedded default: its committed trained weights
        return trained_tiny_pipeline().to(device)
    if source.endswith(".json") and Path(source).is_file():
        source = json.loads(Path(source).read_text())["path"]
    return load_pipeline(source, device=device, dtype=dtype)


def compress(args) -> None:
    from PIL import Image

    from . import codec, images, runs

    pipe = load_model(args.model, args.device, args.dtype)
    size = args.size or images.model_resolution(pipe)
    settings = codec.DiffcSettings(step_stride=args.step_stride, max_chunk_bits=args.max_chunk_bits,
                                   margin_bits=args.margin_bits, denoise_steps=args.denoise_steps,
                                   self_check=args.self_check)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in Path(args.image_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not sources:
        raise SystemExit(f"no images in {args.image_dir}")
    for path in sources:
        with naming(path):
            image = images.load_image(str(path), size)
            seeded = codec.DiffcSettings(**{**settings.__dict__, "seed": runs.image_seed(args.seed, path.stem)})
            data = codec.encode(image, pipe, args.recon_timestep, seeded)
        (out / f"{path.stem}.diffc").write_bytes(data)
        if args.save_original:
            Image.fromarray(image).save(out / f"{path.stem}.original.png")
        print(f"{path.name}: {len(data)} bytes, {8 * len(data) / (size * size):.4f} bpp")


def decompress(args) -> None:
    from PIL import Image

    from . import codec
    from .bitstream import DiffcFile

    paths = sorted(Path(args.input_dir).glob("*.diffc"))
    if not paths:
        raise SystemExit(f"no .diffc files in {args.input_dir}")
    limit = int(args.max_memory_gb * 2**30)
    files = {}
    for path in paths:  # every header is checked before the model loads or anything is allocated
        with naming(path):
            files[path] = path.read_bytes()
            codec.check_header_limits(DiffcFile.from_bytes(files[path]), limit)
    pipe = load_model(args.model, args.device, args.dtype)
    model = codec.DiffusionModel(pipe)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        with naming(path):
            latent = codec.decode_latent(data, pipe, model, limit)
            with codec.numeric_regime(DiffcFile.from_bytes(data).cpu_threads):
                pixels = model.latent_to_image(latent)
        Image.fromarray(pixels).save(out / f"{path.stem}.png")
        print(f"{path.name} -> {out / (path.stem + '.png')}")


@contextlib.contextmanager
def naming(path: Path):
    """Any failure while reading or decoding a file becomes one line that names it."""
    try:
        yield
    except Exception as err:  # the CLI's promise: one line per failure, never a traceback
        raise FileFailure(f"{path}: {one_line(err)}") from None


class FileFailure(Exception):
    pass


def one_line(err: BaseException) -> str:
    from .bitstream import DiffcFormatError
    from .codec import DiffcError

    text = (str(err).splitlines() or [""])[0]
    return text if isinstance(err, (DiffcError, DiffcFormatError)) else f"{type(err).__name__}: {text}"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m sdsqueeze.diffc", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    for name in ("compress", "decompress"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--device", default="cpu")
        p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
        p.add_argument("--output_dir", required=True)
        if name == "compress":
            p.add_argument("--image_dir", required=True)
            p.add_argument("--recon_timestep", type=int, required=True)
            p.add_argument("--size", type=int, default=None, help="pixels; default: the model's native size")
            p.add_argument("--step_stride", type=int, default=50)
            p.add_argument("--max_chunk_bits", type=int, default=12)
            p.add_argument("--margin_bits", type=int, default=3)
            p.add_argument("--denoise_steps", type=int, default=20)
            p.add_argument("--seed", type=int, default=42)
            p.add_argument("--save_original", action="store_true",
                           help="also write the cropped/resized image that was coded")
            p.add_argument("--self_check", action=argparse.BooleanOptionalAction, default=True,
                           help="decode each file before writing it and refuse if it misses the sender's latent")
        else:
            p.add_argument("--input_dir", required=True)
            p.add_argument("--max_memory_gb", type=float, default=8.0,
                           help="refuse files whose decoding would allocate more (candidates and latents)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        compress(args) if args.command == "compress" else decompress(args)
    except FileFailure as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # model loading, output folder, ...: one line too
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
