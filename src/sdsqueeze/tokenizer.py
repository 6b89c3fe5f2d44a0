"""SD 1.x's CLIP tokenizer, rebuilt offline from the BPE vocabulary that ``open_clip`` ships.

Kept apart from models.py so that the prompts stage (which counts tokens) depends on the tokenizer
only, not on the model builder: an edit to the builder does not rerun the prompts job.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def write_clip_tokenizer(out_dir: Path) -> None:
    """Write a Hugging Face CLIP tokenizer from the BPE vocabulary that ``open_clip`` ships.

    The hub's openai/clip-vit-large-patch14 tokenizer is exactly this vocabulary (49,408 tokens);
    rebuilding its vocab.json/merges.txt here lets real English prompts tokenize offline.
    """
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # the same slice CLIP and open_clip take
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(
        str(out_dir / "vocab.json"), str(out_dir / "merges.txt"), model_max_length=77
    )
    tokenizer.save_pretrained(out_dir)
