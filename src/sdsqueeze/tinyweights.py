"""The embedded model's weight files: three float16 safetensors and the training record beside them,
written by sdsqueeze.tinytrain and read by sdsqueeze.models (a module of its own, so that loading the
committed weights does not import the training code)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

COMPONENTS = ("unet", "vae", "text_encoder")
TRAINING_RECORD = "training.json"


def save_weights(pipe, out_dir: str | Path, record: dict) -> dict:
    """Write the three trained components as float16 safetensors (half the bytes; the pipeline loads
    them back as float32, so float16 weights *are* the model) and the training record beside them."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in COMPONENTS:
        state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in getattr(pipe, name).state_dict().items()}
        save_file(state, out_dir / f"{name}.safetensors")
    record = {**record, "vae_scaling_factor": float(pipe.vae.config.scaling_factor), "weights_sha256": weights_hash(out_dir)}
    (out_dir / TRAINING_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    return record


def weights_hash(weights_dir: str | Path) -> str:
    """One SHA-256 over the component files, in a fixed order: the weights' identity in provenance."""
    digest = hashlib.sha256()
    for name in COMPONENTS:
        digest.update((Path(weights_dir) / f"{name}.safetensors").read_bytes())
    return digest.hexdigest()


def load_weights(pipe, weights_dir: str | Path) -> dict:
    """Load committed (or freshly trained) weights into a pipeline of the same TinySpec, as float32.
    Returns the training record, with the hash of the files actually read."""
    from safetensors.torch import load_file

    weights_dir = Path(weights_dir)
    record = json.loads((weights_dir / TRAINING_RECORD).read_text())
    for name in COMPONENTS:
        module = getattr(pipe, name)
        state = load_file(weights_dir / f"{name}.safetensors")
        module.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        module.requires_grad_(False)
    pipe.vae.register_to_config(scaling_factor=record["vae_scaling_factor"])
    return {**record, "weights_sha256": weights_hash(weights_dir)}
