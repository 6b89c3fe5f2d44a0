"""CLIP score (torchmetrics' definition) with open_clip models.

Per image: ``max(100 * cos(E_img(image), E_txt(prompt)), 0)`` — torchmetrics' ``CLIPScore`` on
that single image-prompt pair; a variant's score is the mean over its images. open_clip (not
transformers) because it ships the BPE vocabulary, so only the weights need resolving.
Preprocessing is the model's own (resize shortest side, center crop, normalize).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .weights import WeightsUnavailable, resolve_hf_file

HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
LOCAL_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass
class ClipScorer:
    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    name: str


def local_candidates(weights_dir: str | Path | None, model_name: str, pretrained: str) -> tuple[Path, ...]:
    """``<weights_dir>/open_clip/<model>-<pretrained>.{safetensors,bin,pt}`` (open_clip state dicts)."""
    if not weights_dir:
        return ()
    return tuple(Path(weights_dir) / "open_clip" / f"{model_name}-{pretrained}{s}" for s in LOCAL_SUFFIXES)


def resolve_clip_weights(model_name: str, pretrained: str, weights_dir, download: bool) -> Path:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    local = local_candidates(weights_dir, model_name, pretrained)
    repo = (cfg.get("hf_hub") or "").strip("/")
    if not repo:
        for path in local:
            if path.is_file():
                return path
        raise WeightsUnavailable(
            f"open_clip {model_name}/{pretrained}: not in weights_dir ({', '.join(map(str, local)) or 'unset'}) "
            "and open_clip knows no Hugging Face repository for it")
    try:
        return resolve_hf_file(repo, HF_FILENAMES, local, download)
    except WeightsUnavailable as err:
        raise WeightsUnavailable(f"open_clip {model_name}/{pretrained}: {err}") from None


def load_clip(model_name: str, pretrained: str, weights_dir, download: bool,
              device: str = "cpu") -> ClipScorer:
    """The CLIP model with resolved weights; raises ``WeightsUnavailable``."""
    import open_clip

    path = resolve_clip_weights(model_name, pretrained, weights_dir, download)
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    # Loading by file path skips the tag's settings; pass the ones that change the numbers.
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=str(path), device=device,
        force_quick_gelu=bool(cfg.get("quick_gelu", False)),
        image_mean=cfg.get("mean"), image_std=cfg.get("std"),
        image_interpolation=cfg.get("interpolation"), image_resize_mode=cfg.get("resize_mode"))
    return ClipScorer(model.eval(), preprocess, open_clip.get_tokenizer(model_name),
                      f"{model_name}/{pretrained}")


@torch.inference_mode()
def clip_embeddings(scorer: ClipScorer, paths: list[str | Path], texts: list[str],
                    batch_size: int = 16, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised (image, text) embeddings, row i = (paths[i], texts[i])."""
    from PIL import Image

    images, words = [], []
    for start in range(0, len(paths), batch_size):
        pixels = torch.stack([scorer.preprocess(Image.open(p).convert("RGB"))
                              for p in paths[start:start + batch_size]]).to(device)
        tokens = scorer.tokenizer(texts[start:start + batch_size]).to(device)
        images.append(scorer.model.encode_image(pixels).float().cpu())
        words.append(scorer.model.encode_text(tokens).float().cpu())
    return torch.cat(images), torch.cat(words)


def clip_score_from_embeddings(image_emb: torch.Tensor, text_emb: torch.Tensor) -> np.ndarray:
    """Per pair: torchmetrics' ``100 * <normalised image, normalised text>``, clipped at 0."""
    image_emb = image_emb / image_emb.norm(p=2, dim=-1, keepdim=True)
    text_emb = text_emb / text_emb.norm(p=2, dim=-1, keepdim=True)
    score = 100 * (image_emb * text_emb).sum(axis=-1)
    return torch.clamp(score, min=0).double().numpy()


def clip_scores(scorer: ClipScorer, paths, texts, device: str = "cpu") -> np.ndarray:
    return clip_score_from_embeddings(*clip_embeddings(scorer, list(paths), list(texts), device=device))
