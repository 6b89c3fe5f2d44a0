"""COCO-format captions to a fixed, seeded prompt set (via pycocotools).

Selection, after the OptSD seed: one caption per image, too-short or generic captions filtered
out, trailing punctuation removed, optional prefix/suffix enhancement; then a seeded shuffle of
the images and the first ``n``. Everything is deterministic given the file and the config.

Each prompt's length in CLIP tokens is recorded (``tokens``, start and end tokens included) with
``truncated``: SD 1.x's text encoder reads at most 77 tokens and diffusers drops the rest with
only a log line, so a long prompt is rendered from its first 75 text tokens.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import re
import tempfile
from pathlib import Path

import pandas as pd

from .seeding import prompt_seed

log = logging.getLogger(__name__)
PROMPT_COLUMNS = ["prompt_id", "image_id", "caption", "prompt", "seed", "tokens", "truncated"]
CLIP_MAX_TOKENS = 77  # CLIP text encoders' context, start and end tokens included
DEFAULT_GENERIC = [
    "a picture of", "an image of", "a photo of something", "there is a", "this is a",
]


class CaptionsError(ValueError):
    """The captions file is not valid COCO captions JSON."""


def _fail(path, where: str, what: str) -> None:
    raise CaptionsError(f"captions file {path}: {where}: {what}")


def validate_coco_captions(data, path) -> None:
    """Check the COCO captions layout, naming the first offending entry."""
    if not isinstance(data, dict):
        _fail(path, "top level", f"expected an object with 'images' and 'annotations', got {type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            _fail(path, key, "missing or not a list")
    image_ids = set()
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int):
            _fail(path, f"images[{i}]", "needs an integer 'id'")
        image_ids.add(image["id"])
    ann_ids = set()
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            _fail(path, where, "not an object")
        for key in ("id", "image_id"):
            if not isinstance(ann.get(key), int):
                _fail(path, where, f"needs an integer '{key}'")
        if not isinstance(ann.get("caption"), str):
            _fail(path, where, f"'caption' is not text (got {type(ann.get('caption')).__name__})")
        if ann["image_id"] not in image_ids:
            _fail(path, where, f"image_id {ann['image_id']} is not in 'images' (dangling)")
        if ann["id"] in ann_ids:
            _fail(path, where, f"duplicate annotation id {ann['id']}")
        ann_ids.add(ann["id"])
    if not data["annotations"]:
        _fail(path, "annotations", "is empty")


def load_coco_captions(path: str | Path):
    """Parse, validate and index a captions file with pycocotools."""
    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise CaptionsError(f"captions file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CaptionsError(f"captions file {path}: not valid JSON ({err})") from None
    validate_coco_captions(data, path)
    coco = COCO()  # build the index from memory: validated once, read once
    coco.dataset = data
    coco.createIndex()
    return coco


def clean_caption(caption: str) -> str:
    return re.sub(r"\s+", " ", caption).strip().rstrip(".!?,;: ")


def is_usable(caption: str, min_words: int, generic: list[str]) -> bool:
    words = caption.split()
    lowered = caption.lower()
    return len(words) >= min_words and not any(lowered.startswith(g) for g in generic)


def usable_captions_by_image(coco, min_words: int, generic: list[str] | None):
    """For each image (by id) with at least one caption passing the filters: those captions."""
    generic = [g.lower() for g in (DEFAULT_GENERIC if generic is None else generic)]
    for image_id in sorted(coco.getImgIds()):
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[image_id])), key=lambda a: a["id"])
        usable = [a for a in anns if is_usable(clean_caption(a["caption"]), min_words, generic)]
        if usable:
            yield usable


def too_few_captions(available: int, n: int, min_words: int, path=None) -> CaptionsError:
    where = f"captions file {path}: " if path else ""
    return CaptionsError(
        f"{where}only {available} images have a caption passing the filters "
        f"(min_words={min_words}), but prompts.n = {n}: lower prompts.n or relax the filters"
    )


def check_prompt_set(settings: dict) -> None:
    """The config's `prompts` section against its captions file, before any job: the file parses
    as COCO captions and holds at least `n` usable images. (A file still to be downloaded is
    checked by the prompts job.)"""
    path = Path(settings["captions"])
    if not path.is_file():
        return
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' "creating index..." on a dry run
        coco = load_coco_captions(path)
    available = sum(1 for _ in usable_captions_by_image(coco, settings["min_words"], settings["generic_phrases"]))
    if available < settings["n"]:
        raise too_few_captions(available, settings["n"], settings["min_words"], path)


def select_prompts(coco, n: int, seed: int, min_words: int = 5, generic: list[str] | None = None,
                   prefix: str = "", suffix: str = "") -> pd.DataFrame:
    """One usable caption per image for ``n`` seeded-shuffled images."""
    rng = random.Random(seed)
    candidates = [rng.choice(usable) for usable in usable_captions_by_image(coco, min_words, generic)]
    if len(candidates) < n:
        raise too_few_captions(len(candidates), n, min_words)
    rng.shuffle(candidates)
    rows = []
    for ann in sorted(candidates[:n], key=lambda a: a["id"]):
        caption = clean_caption(ann["caption"])
        prompt = ", ".join(part for part in (prefix.strip(), caption, suffix.strip()) if part)
        rows.append({"prompt_id": ann["id"], "image_id": ann["image_id"], "caption": ann["caption"],
                     "prompt": prompt, "seed": prompt_seed(seed, ann["id"])})
    return mark_truncation(pd.DataFrame(rows, columns=PROMPT_COLUMNS[:5]))[PROMPT_COLUMNS]


def clip_token_counts(texts: list[str]) -> list[int]:
    """Length of each text in CLIP tokens (start/end included), with the BPE tokenizer the
    embedded model uses, which is also SD 1.x's (openai/clip-vit-large-patch14's vocabulary)."""
    from transformers import CLIPTokenizer

    from .tokenizer import write_clip_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        write_clip_tokenizer(Path(folder))
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    return [len(ids) for ids in tokenizer(list(texts), truncation=False, verbose=False).input_ids]


def mark_truncation(selected: pd.DataFrame) -> pd.DataFrame:
    """Add ``tokens`` and ``truncated``; warn once when the text encoder will cut prompts."""
    selected["tokens"] = clip_token_counts(selected.prompt.tolist()) if len(selected) else []
    selected["truncated"] = selected.tokens > CLIP_MAX_TOKENS
    if selected.truncated.any():
        log.warning("%d of %d prompts are longer than CLIP's %d tokens; the text encoder sees only "
                    "their first %d (column 'truncated' of the prompts CSV)", int(selected.truncated.sum()),
                    len(selected), CLIP_MAX_TOKENS, CLIP_MAX_TOKENS)
    return selected


def shard_of(prompts: pd.DataFrame, shard: int, shard_size: int) -> pd.DataFrame:
    return prompts.iloc[shard * shard_size : (shard + 1) * shard_size]


def n_shards(n_prompts: int, shard_size: int) -> int:
    return -(-n_prompts // shard_size)


SAMPLE_LIST_COLUMNS = ["prompt_id", "seed"]


def sample_list(n: int, seed: int) -> pd.DataFrame:
    """An unconditional model's stand-in for the prompt set: ``n`` sample ids, each with the seed a
    prompt of that id would get (so shards, seeds and the per-id bootstrap work unchanged), no text."""
    return pd.DataFrame({"prompt_id": range(n), "seed": [prompt_seed(seed, i) for i in range(n)]},
                        columns=SAMPLE_LIST_COLUMNS)
