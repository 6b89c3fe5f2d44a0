"""Models: the embedded tiny Stable-Diffusion-architecture pipeline, and loading any diffusers model.

The tiny model is built from a seed and written with ``save_pretrained``; every later stage loads
it back through ``DiffusionPipeline.from_pretrained``, the very code path a hub id or a local
diffusers folder takes, so nothing downstream knows which kind of model it has.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tokenizer import write_clip_tokenizer  # noqa: F401 - models' callers use it from here

TINY_SOURCE = "tiny"
# The embedded unconditional latent model: its own UNet2DModel on the embedded autoencoder's
# latents, sampled by diffusers' LDMPipeline (docs/unconditional.md).
TINY_UNCOND_SOURCE = "tiny-uncond"
# SD 1.5's exact architecture with seeded weights: runs the SD 1.5 configs where no weights can be
# downloaded (a GPU node without network). Speed and memory hold; its images are meaningless.
SD15_SEEDED_SOURCE = "sd15-seeded"
BUILT_SOURCES = (TINY_SOURCE, SD15_SEEDED_SOURCE, TINY_UNCOND_SOURCE)
SEEDED_WEIGHTS_NOTE = "seeded (SD 1.5 architecture, untrained): images are meaningless; speed and memory hold"

SD15_SCHEDULER = dict(  # Stable Diffusion 1.x's own scheduler settings
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    skip_prk_steps=True,
    steps_offset=1,
    set_alpha_to_one=False,
)


def sd15_scheduler():
    """SD 1.x's PNDM scheduler as its published scheduler_config.json sets it, ``clip_sample: false``
    included: PNDM ignores that key but diffusers keeps it in the config, so a DDIM scheduler made
    from it with ``from_config`` (a ``scheduler: ddim`` variant) does not clip the predicted x0 to
    [-1, 1] — a range SD's latents do not live in, which would make DDIM a strawman."""
    from diffusers import PNDMScheduler

    return PNDMScheduler.from_config({**SD15_SCHEDULER, "clip_sample": False})


DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


class ModelUnavailableError(RuntimeError):
    """The configured model cannot be found locally and cannot be downloaded."""


@dataclass(frozen=True)
class SDArchitecture:
    """SD 1.x's component layout (cross-attention down/up blocks around one plain block, a 4-level
    VAE, a CLIP text encoder) with its sizes: SD 1.5's published ones or the tiny model's."""

    unet_channels: tuple[int, ...]
    layers_per_block: int
    attention_head_dim: int
    text_hidden: int  # also the UNet's cross-attention width
    text_layers: int
    text_heads: int
    vae_channels: tuple[int, ...]
    vae_layers: int
    norm_groups: int


SD15_ARCHITECTURE = SDArchitecture(unet_channels=(320, 640, 1280, 1280), layers_per_block=2,
                                   attention_head_dim=8, text_hidden=768, text_layers=12, text_heads=12,
                                   vae_channels=(128, 256, 512, 512), vae_layers=2, norm_groups=32)


def build_sd_components(arch: SDArchitecture, image_size: int):
    """(unet, vae, text_encoder) of ``arch`` with weights from torch's current RNG state: the one
    builder of the embedded model and of the GPU benchmark's SD 1.5 (which cannot download)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cross_blocks = len(arch.unet_channels) - 1
    unet = UNet2DConditionModel(
        sample_size=image_size // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=arch.unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * cross_blocks + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * cross_blocks,
        layers_per_block=arch.layers_per_block,
        cross_attention_dim=arch.text_hidden,
        attention_head_dim=arch.attention_head_dim,
        norm_num_groups=arch.norm_groups,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(arch.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(arch.vae_channels),
        block_out_channels=arch.vae_channels,
        layers_per_block=arch.vae_layers,
        latent_channels=4,
        norm_num_groups=arch.norm_groups,
        sample_size=image_size,
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=arch.text_hidden,
            intermediate_size=4 * arch.text_hidden,
            num_hidden_layers=arch.text_layers,
            num_attention_heads=arch.text_heads,
            max_position_embeddings=77,
            projection_dim=arch.text_hidden,
        )
    )
    return unet, vae, text_encoder


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the embedded model: SD 1.x's architecture, shrunk to run in seconds on a CPU."""

    seed: int = 0
    image_size: int = 128  # pixels; the VAE downsamples by 8 like SD's
    unet_channels: tuple[int, ...] = (32, 64, 64)
    text_hidden: int = 64
    text_layers: int = 2

    def architecture(self) -> SDArchitecture:
        return SDArchitecture(unet_channels=self.unet_channels, layers_per_block=1, attention_head_dim=8,
                              text_hidden=self.text_hidden, text_layers=self.text_layers, text_heads=4,
                              vae_channels=(16, 32, 32, 32), vae_layers=1, norm_groups=16)


# The embedded model's trained weights (sdsqueeze.tinytrain; how they were made: training.json there).
COMMITTED_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / "models" / "tiny"
TINY_WEIGHTS = ("trained", "seeded", "fit")  # config model.tiny_weights


def build_tiny_pipeline(spec: TinySpec = TinySpec(), weights: str | os.PathLike | None = None,
                        record: dict | None = None):
    """The tiny pipeline in memory: seeded weights, or ``weights`` (a folder tinytrain wrote, e.g.
    COMMITTED_WEIGHTS) loaded over them; that folder's training record goes into ``record``."""
    import tempfile

    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    torch.manual_seed(spec.seed)
    unet, vae, text_encoder = build_sd_components(spec.architecture(), spec.image_size)
    with tempfile.TemporaryDirectory() as tok_dir:
        write_clip_tokenizer(Path(tok_dir))
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=sd15_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if weights is not None:
        from .tinyweights import load_weights

        loaded = load_weights(pipe, weights)
        if record is not None:
            record.update(loaded)
    return pipe


def trained_tiny_pipeline(weights: str | os.PathLike = COMMITTED_WEIGHTS):
    """The embedded model as the default run uses it: the committed trained weights."""
    return build_tiny_pipeline(TinySpec(), weights)


def save_tiny_pipeline(out_dir: str | os.PathLike, spec: TinySpec = TinySpec(),
                       weights: str | os.PathLike | None = None, record: dict | None = None) -> Path:
    out_dir = Path(out_dir)
    build_tiny_pipeline(spec, weights, record).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def build_seeded_pipeline(arch: SDArchitecture, image_size: int, seed: int = 0, device: str = "cpu",
                          tokenizer_dir: str | os.PathLike | None = None):
    """A StableDiffusionPipeline of ``arch`` with weights drawn from ``seed`` (on ``device``: a GPU
    draws SD 1.5's 1.1 B weights in seconds, a CPU in about a minute, and the two draw different
    values), the real CLIP tokenizer and SD 1.x's scheduler. The one builder of ``sd15-seeded`` and
    of the GPU benchmark's pipeline."""
    import tempfile

    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    torch.manual_seed(seed)
    with torch.device(device):
        unet, vae, text_encoder = build_sd_components(arch, image_size)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = Path(tokenizer_dir or scratch)
        if not (tokenizer_dir / "vocab.json").is_file():
            write_clip_tokenizer(tokenizer_dir)
        tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=sd15_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_sd15_seeded(out_dir: str | os.PathLike, seed: int = 0, device: str = "cpu",
                     arch: SDArchitecture = SD15_ARCHITECTURE, image_size: int = 512) -> Path:
    """Write ``sd15-seeded`` with ``save_pretrained`` (fp32 safetensors), for from_pretrained to
    read back like any model. ``arch``/``image_size`` are SD 1.5's; tests pass a small one."""
    out_dir = Path(out_dir)
    build_seeded_pipeline(arch, image_size, seed, device).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def is_local_pipeline(source: str) -> bool:
    return (Path(source) / "model_index.json").is_file()


# diffusers' unconditional image pipelines the workflow runs: a seeded sample list instead of
# prompts, no text encoder, no guidance (docs/unconditional.md). = sdsqueeze.config's copy (tested).
UNCONDITIONAL_PIPELINES = ("LDMPipeline", "DDPMPipeline", "DDIMPipeline")
# Other prompt-free pipelines (score SDE, Karras VE, audio): sampled by other means, refused by name.
UNSUPPORTED_PIPELINES = ("PNDMPipeline", "ScoreSdeVePipeline", "KarrasVePipeline", "DanceDiffusionPipeline")
TEXT_TO_IMAGE, UNCONDITIONAL = "text-to-image", "unconditional"


def pipeline_kind(pipeline_class: str) -> str:
    """text-to-image or unconditional, from a pipeline's class name (model_index.json's _class_name)."""
    return UNCONDITIONAL if pipeline_class in UNCONDITIONAL_PIPELINES else TEXT_TO_IMAGE


def check_pipeline_class(source: str, index_path: str | os.PathLike, kind: str | None = None) -> None:
    """Refuse a pipeline the workflow cannot sample, or one whose kind is not the configured one
    (``kind``: the config's resolved model.kind), with one message."""
    pipeline_class = json.loads(Path(index_path).read_text()).get("_class_name", "")
    if pipeline_class in UNSUPPORTED_PIPELINES:
        raise ModelUnavailableError(
            f"model.source '{source}' is a {pipeline_class}, which this workflow does not sample; it runs "
            f"text-to-image pipelines and the unconditional {', '.join(UNCONDITIONAL_PIPELINES)}.")
    found = pipeline_kind(pipeline_class)
    if kind is not None and found != kind:
        raise ModelUnavailableError(
            f"model.source '{source}' is a {pipeline_class} ({found}), but the config runs it as {kind}; "
            f"set model.kind: {found} (or auto) and the settings of a {found} model (docs/unconditional.md).")


def check_model_available(source: str, kind: str | None = None) -> None:
    """Fail fast, before any job runs, when a model can be neither found nor downloaded, is a
    pipeline the workflow cannot sample, or is not of the configured ``kind``."""
    if source in BUILT_SOURCES:
        return
    if is_local_pipeline(source):
        check_pipeline_class(source, Path(source) / "model_index.json", kind)
        return
    if os.path.isdir(source) or source.startswith((".", "/", "~")):
        raise ModelUnavailableError(
            f"model.source '{source}' is a path but holds no diffusers pipeline (model_index.json). "
            "Point it at a folder written by `DiffusionPipeline.save_pretrained`."
        )
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        index = try_to_load_from_cache(source, "model_index.json")
        if not isinstance(index, str):
            os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
            os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
            index = hf_hub_download(source, "model_index.json")
    except Exception as err:  # offline, unknown id, gated repo: all end the same way for the user
        raise ModelUnavailableError(
            f"model '{source}' is not in the local Hugging Face cache and could not be fetched "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]}). Provide it by running "
            f"`hf download {source}` where the hub is reachable (then share HF_HOME), "
            "or set model.source to a local folder saved with `save_pretrained`."
        ) from None
    check_pipeline_class(source, index, kind)


def resolve_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])


def load_pipeline(path_or_id: str, device: str = "cpu", dtype: str = "float32"):
    """Load any diffusers pipeline the workflow samples (text-to-image or unconditional) the same
    way, the embedded models included."""
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    check_model_available(path_or_id)
    pipe = DiffusionPipeline.from_pretrained(path_or_id, dtype=resolve_dtype(dtype))
    if getattr(pipe, "safety_checker", None) is not None:
        # Blacked-out images would corrupt every quality metric; the study measures the model.
        pipe.safety_checker = None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(torch.device(device))


def describe_pipeline(pipe) -> dict[str, Any]:
    """Parameter counts per component, for provenance and reports."""
    counts = {}
    for name in ("unet", "transformer", "vae", "vqvae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            counts[name] = sum(p.numel() for p in module.parameters())
    return {"class": type(pipe).__name__, "parameters": counts}


def fetch_pipeline(source: str) -> str:
    """A local folder as is; a hub id downloaded (only the files a pipeline loads) into the HF cache."""
    if is_local_pipeline(source):
        return str(Path(source).resolve())
    check_model_available(source)
    from diffusers import DiffusionPipeline

    return str(DiffusionPipeline.download(source))


def load_materialized(model_json: str | os.PathLike, device: str, dtype: str):
    """Load the pipeline a materialize_model record (resources/models/{model}/model.json) points at."""
    record = json.loads(Path(model_json).read_text())
    return load_pipeline(record["path"], device=device, dtype=dtype)
