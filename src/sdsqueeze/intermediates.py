"""Checks of the files one job leaves for the next, so damage is named instead of mis-measured.

A generation shard is a ``directory()`` output: Snakemake sees only the folder, never a file
changed, added or removed inside it. Its manifest therefore carries the sha256 of every image
(and provenance.json those of the manifest and the final latents); every reader checks the
manifest against the files on disk, and against the prompt set where it has one, before using
a single pixel. Each failure is one ``DamagedIntermediate`` line naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

MANIFEST = "manifest.csv"
LATENTS = "latents.safetensors"
PROVENANCE = "provenance.json"
REQUIRED_COLUMNS = ("prompt_id", "sample", "seed", "variant", "file", "sha256")
INTEGER_COLUMNS = ("prompt_id", "sample", "seed")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
REGENERATE = "delete the shard folder and rerun to regenerate it"


class DamagedIntermediate(ValueError):
    """An intermediate file is missing, unreadable or changed since it was written."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_image(path: str | Path, mode: str = "RGB") -> np.ndarray:
    """Decode an image completely (PIL decodes lazily), naming the file when it is damaged."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode))
    except FileNotFoundError:
        raise DamagedIntermediate(f"{path}: image missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DamagedIntermediate(f"{path}: damaged image ({type(err).__name__}: {err})") from None


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV one job wrote for another (manifest, runs table), naming the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise DamagedIntermediate(f"{path}: missing; {REGENERATE}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        first_line = (str(err).splitlines() or [""])[0][:160]
        raise DamagedIntermediate(f"{path}: not a readable table ({type(err).__name__}: {first_line}); "
                                  f"{REGENERATE}") from None


def _check_layout(manifest: pd.DataFrame, path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest]
    if missing:
        raise DamagedIntermediate(f"{path}: not a shard manifest (no column {', '.join(missing)}); {REGENERATE}")
    for column in INTEGER_COLUMNS:
        if not pd.api.types.is_integer_dtype(manifest[column]):
            raise DamagedIntermediate(f"{path}: column {column} holds non-integer or empty values; {REGENERATE}")
    names = manifest.file.astype(str)
    bad = [f for f in names if Path(f).name != f or not f.endswith(".png")]
    bad += [h for h in manifest.sha256.astype(str) if not SHA256.match(h)][:1]
    if bad:
        raise DamagedIntermediate(f"{path}: malformed entry {bad[0]!r}; {REGENERATE}")
    if manifest.duplicated(["prompt_id", "sample"]).any() or names.duplicated().any():
        raise DamagedIntermediate(f"{path}: an image is listed twice; {REGENERATE}")


def recorded_checksums(shard: Path) -> dict[str, str]:
    """sha256 of the manifest and latents recorded at generation time ({} if not recorded)."""
    path = shard / PROVENANCE
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("checksums", {}))
    except (ValueError, AttributeError, TypeError) as err:
        raise DamagedIntermediate(f"{path}: not readable provenance ({type(err).__name__}); {REGENERATE}") from None


def _check_recorded(shard: Path, name: str) -> None:
    expected = recorded_checksums(shard).get(name)
    if expected and sha256_file(shard / name) != expected:
        raise DamagedIntermediate(f"{shard / name}: changed after the shard was written "
                                  f"(sha256 differs from provenance.json); {REGENERATE}")


def read_manifest(shard_dir: str | Path) -> pd.DataFrame:
    """A shard's manifest, checked against its files on disk, with each image's path."""
    shard = Path(shard_dir)
    path = shard / MANIFEST
    manifest = read_table(path)
    _check_layout(manifest, path)
    _check_recorded(shard, MANIFEST)
    listed = set(manifest.file)
    unlisted = sorted(p.name for p in shard.glob("*.png") if p.name not in listed)
    if unlisted:
        raise DamagedIntermediate(f"{shard / unlisted[0]}: on disk but not in {path} "
                                  f"(a deleted manifest row would silently shrink n); {REGENERATE}")
    for row in manifest.itertuples():
        image = shard / row.file
        if not image.is_file():
            raise DamagedIntermediate(f"{image}: listed in {path} but missing; {REGENERATE}")
        if sha256_file(image) != row.sha256:
            raise DamagedIntermediate(f"{image}: changed after its manifest was written "
                                      f"(sha256 differs from {path}); {REGENERATE}")
    manifest["path"] = [str(shard / f) for f in manifest.file]
    return manifest


def check_covers_prompts(manifests: pd.DataFrame, prompts: pd.DataFrame, where: str) -> None:
    """Every variant has the same samples of every prompt of the prompt set, and nothing else."""
    expected = set(prompts.prompt_id.astype(int))
    for variant, group in manifests.groupby("variant", sort=True):
        found = set(group.prompt_id.astype(int))
        if expected - found:
            raise DamagedIntermediate(
                f"{where}: variant {variant} has no image of prompt_id {min(expected - found)} of the "
                f"prompt set ({len(expected)} prompts): a shard lost a manifest row or is missing")
        if found - expected:
            raise DamagedIntermediate(
                f"{where}: variant {variant} has images of prompt_id {min(found - expected)}, which the "
                "prompt set does not hold: shards from another prompt set; delete them and rerun")
        samples = group.groupby("prompt_id")["sample"].apply(frozenset)
        if samples.nunique() != 1 or set(samples.iloc[0]) != set(range(len(samples.iloc[0]))):
            short = samples[samples.map(len) < samples.map(len).max()]
            prompt = short.index[0] if len(short) else samples.index[0]
            raise DamagedIntermediate(
                f"{where}: variant {variant} has samples {sorted(samples.loc[prompt])} of prompt_id "
                f"{prompt}, other prompts {sorted(max(samples, key=len))}: a manifest lost a row")


def read_manifests(shard_dirs, prompts: pd.DataFrame | None = None) -> pd.DataFrame:
    """All manifests of some shards, each checked; with ``prompts``, checked for completeness."""
    dirs = [Path(d) for d in shard_dirs]
    if not dirs:
        raise DamagedIntermediate("no shard folders given")
    manifests = pd.concat([read_manifest(d) for d in dirs], ignore_index=True)
    if prompts is not None:
        check_covers_prompts(manifests, prompts, os.path.commonpath([str(d) for d in dirs]))
    return manifests


def load_latents(shard_dir: str | Path) -> dict:
    """A shard's final latents, checked against provenance's sha256 and the manifest's files."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    shard = Path(shard_dir)
    path = shard / LATENTS
    if not path.is_file():
        raise DamagedIntermediate(f"{path}: missing; {REGENERATE}")
    _check_recorded(shard, LATENTS)
    try:
        latents = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        first_line = (str(err).splitlines() or [""])[0][:160]
        raise DamagedIntermediate(f"{path}: unreadable ({type(err).__name__}: {first_line}); {REGENERATE}") from None
    listed = set(read_manifest(shard).file)
    if set(latents) != listed:
        raise DamagedIntermediate(f"{path}: holds {len(latents)} latents, the manifest {len(listed)} images; "
                                  f"{REGENERATE}")
    return latents
