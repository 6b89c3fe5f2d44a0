"""Calibration sets for post-training quantization of the UNet (after Q-Diffusion).

A calibration set is a stack of UNet inputs, each sample holding exactly what one classifier-free
guided UNet call needs: the model input ``sample`` (x_t, already scaled as the scheduler feeds it),
its ``timestep``, and the text embeddings of the prompt (``cond``) and of the empty prompt
(``uncond``). Three kinds:

- ``noise_data``: Gaussian latents at timesteps sampled from the inference schedule;
- ``raw_data``: real photographs (scikit-image's, or a folder such as COCO val2017) encoded by the
  VAE and noised to sampled timesteps with the scheduler's own ``add_noise``;
- ``timestep_aware``: x_t read off the full-precision model's own sampling trajectories, every
  ``cali_st``-th UNet call, ``cali_n`` trajectories (samples per step) — Q-Diffusion's method.

Prompts come from the captions file, never from the evaluation prompt set, so the quantized model
is not calibrated on the very trajectories it is judged on. An unconditional pipeline (LDM, DDPM,
DDIM) has no text: its sets hold ``sample`` and ``timestep`` only, raw data goes through its own
autoencoder (VQ or KL; pixels as they are for a pixel-space model), and its trajectories are
drawn from seeds of the same calibration namespace, never the sample list's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("raw_data", "noise_data", "timestep_aware")
TENSORS = ("sample", "timestep", "cond", "uncond")
TEXT_TENSORS = ("cond", "uncond")  # absent from an unconditional model's sets
# scikit-image's bundled photographs (natural scenes, objects, a face; no synthetic patterns)
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "moon", "clock",
                  "hubble_deep_field", "stereo_motorcycle")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SEED_NAMESPACE = 7_919  # offsets the global seed so calibration draws never equal evaluation draws


@dataclass(frozen=True)
class CalibrationSettings:
    kind: str
    samples: int = 16        # noise_data, raw_data: number of samples
    cali_n: int = 4          # timestep_aware: trajectories, i.e. samples per kept step
    cali_st: int = 5         # timestep_aware: keep every cali_st-th UNet call
    images: str | None = None  # raw_data: image folder; None = scikit-image's photographs
    seed: int = 42

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown calibration kind '{self.kind}'; allowed: {', '.join(KINDS)}")

    @property
    def n_prompts(self) -> int:
        return self.cali_n if self.kind == "timestep_aware" else self.samples


def set_name(kind: str, calibration_config: dict) -> str:
    """File stem naming a set by kind and size: built once per (model, kind, size)."""
    c = calibration_config
    if kind == "timestep_aware":
        return f"{kind}-n{c['cali_n']}-st{c['cali_st']}"
    if kind in KINDS:
        return f"{kind}-n{c['samples']}"
    raise ValueError(f"unknown calibration kind '{kind}'; allowed: {', '.join(KINDS)}")


def kind_of(name: str) -> str:
    return name.split("-", 1)[0]


# --- prompts and text embeddings ------------------------------------------------------------

def calibration_prompts(coco, evaluation: pd.DataFrame, n: int, seed: int,
                        min_words: int = 5, generic: list[str] | None = None,
                        prefix: str = "", suffix: str = "") -> list[str]:
    """``n`` prompts from captions of images outside the evaluation set (cycled if too few)."""
    from ..prompts import clean_caption, is_usable

    generic = [g.lower() for g in (generic or [])]
    held_out = set(evaluation.image_id.astype(int))
    rng = np.random.default_rng(seed + SEED_NAMESPACE)
    captions = []
    for image_id in sorted(set(coco.getImgIds()) - held_out):
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=[image_id])), key=lambda a: a["id"])
        usable = [clean_caption(a["caption"]) for a in anns
                  if is_usable(clean_caption(a["caption"]), min_words, generic)]
        if usable:
            captions.append(usable[int(rng.integers(len(usable)))])
    if not captions:
        raise ValueError("no caption outside the evaluation prompt set passes the filters; "
                         "calibration needs prompts the evaluation does not use")
    order = rng.permutation(len(captions))
    chosen = [captions[i] for i in order]
    wrap = lambda c: ", ".join(p for p in (prefix.strip(), c, suffix.strip()) if p)  # noqa: E731
    return [wrap(chosen[i % len(chosen)]) for i in range(n)]


def check_supported(pipe) -> None:
    unet = getattr(pipe, "unet", None)
    if unet is None or getattr(unet.config, "addition_embed_type", None) is not None:
        raise ValueError(
            f"UNet calibration supports UNets conditioned on text embeddings only (SD 1.x/2.x); "
            f"{type(pipe).__name__} needs extra conditioning (e.g. SDXL's time ids) not handled yet"
        )


def unconditional(pipe) -> bool:
    from ..uncond import is_unconditional

    return is_unconditional(pipe)


def with_text(pipe, tensors: dict, prompts: list[str] | None) -> dict:
    """The set with its prompts' (cond, uncond) embeddings; as it is for an unconditional model."""
    if unconditional(pipe):
        return tensors
    cond, uncond = text_embeddings(pipe, prompts)
    return {**tensors, "cond": cond, "uncond": uncond}


def text_embeddings(pipe, prompts: list[str]):
    """(cond, uncond) text embeddings, exactly as the pipeline computes them for guidance."""
    import torch

    with torch.inference_mode():
        cond, uncond = pipe.encode_prompt(prompts, pipe.device, 1, True)
    return cond.float().cpu(), uncond.float().cpu()


# --- the three kinds --------------------------------------------------------------------------

def fresh_scheduler(pipe, steps: int):
    """A new scheduler per use: some keep a step index between calls (Euler), which must not leak."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    return scheduler


def sampled_timesteps(pipe, steps: int, n: int, generator) -> list:
    import torch

    schedule = fresh_scheduler(pipe, steps).timesteps
    picks = torch.randint(len(schedule), (n,), generator=generator)
    return [schedule[int(i)] for i in picks]


def model_input(pipe, steps: int, noisy, timestep):
    """What the UNet sees at ``timestep`` (scale_model_input is the identity for DDIM/PNDM)."""
    return fresh_scheduler(pipe, steps).scale_model_input(noisy, timestep)


def noise_data(pipe, settings: CalibrationSettings, prompts, steps: int, shape) -> dict:
    import torch

    generator = torch.Generator("cpu").manual_seed(settings.seed + SEED_NAMESPACE)
    timesteps = sampled_timesteps(pipe, steps, settings.samples, generator)
    sigma = float(fresh_scheduler(pipe, steps).init_noise_sigma)
    samples = [model_input(pipe, steps, torch.randn((1, *shape), generator=generator) * sigma, t)
               for t in timesteps]
    return with_text(pipe, {"sample": torch.cat(samples),
                            "timestep": torch.stack([torch.as_tensor(t) for t in timesteps])}, prompts)


def load_photographs(folder: str | None, size: tuple[int, int], n: int, seed: int) -> np.ndarray:
    """``n`` RGB crops in [0, 1] (n, h, w, 3): random crops of the photographs, resized."""
    from skimage import data as skdata
    from skimage.color import gray2rgb
    from skimage.io import imread
    from skimage.transform import resize

    if folder is None:
        def load(name):
            image = getattr(skdata, name)()
            return image[0] if isinstance(image, tuple) else image  # stereo pair: the left view
        sources = list(SKIMAGE_PHOTOS)
    else:
        paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise FileNotFoundError(f"calibration.images: no images ({', '.join(IMAGE_SUFFIXES)}) "
                                    f"under {folder}")
        load, sources = imread, paths
    height, width = size
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        image = np.asarray(load(sources[i % len(sources)]))
        image = gray2rgb(image) if image.ndim == 2 else image[..., :3]
        image = image.astype(np.float32) / (255.0 if np.issubdtype(image.dtype, np.integer) else 1.0)
        # A random square crop of at least half the short side, resized to the model's size.
        side = int(min(image.shape[:2]) * rng.uniform(0.5, 1.0))
        top = int(rng.integers(image.shape[0] - side + 1))
        left = int(rng.integers(image.shape[1] - side + 1))
        crop = image[top : top + side, left : left + side]
        crops.append(resize(crop, (height, width), anti_aliasing=True).astype(np.float32))
    return np.stack(crops)


def raw_data(pipe, settings: CalibrationSettings, prompts, steps: int, size) -> dict:
    import torch

    generator = torch.Generator("cpu").manual_seed(settings.seed + SEED_NAMESPACE)
    pixels = load_photographs(settings.images, size, settings.samples, settings.seed + SEED_NAMESPACE)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2) * 2 - 1  # the VAE's [-1, 1] range
    clean = encode_images(pipe, images)
    timesteps = sampled_timesteps(pipe, steps, settings.samples, generator)
    samples = []
    for x0, t in zip(clean, timesteps):
        noise = torch.randn(x0.shape, generator=generator)
        noisy = fresh_scheduler(pipe, steps).add_noise(x0[None], noise[None], torch.as_tensor([t]))
        samples.append(model_input(pipe, steps, noisy, t))
    return with_text(pipe, {"sample": torch.cat(samples),
                            "timestep": torch.stack([torch.as_tensor(t) for t in timesteps])}, prompts)


def encode_images(pipe, images):
    """Images in [-1, 1] as the UNet's clean inputs: the autoencoder's latents (a KL posterior's mean
    or a VQ encoder's pre-quantization latents) times its scaling factor; the pixels themselves for
    a pixel-space model (DDPM, DDIM)."""
    import torch

    # `is None`, not `or`: a torch.compile'd module refuses truth tests.
    autoencoder = getattr(pipe, "vae", None)
    autoencoder = getattr(pipe, "vqvae", None) if autoencoder is None else autoencoder
    if autoencoder is None:
        return images.float()
    with torch.inference_mode():
        out = autoencoder.encode(images.to(autoencoder.device, autoencoder.dtype))
    encoded = out.latent_dist.mean if hasattr(out, "latent_dist") else out.latents
    return encoded.float().cpu() * getattr(autoencoder.config, "scaling_factor", 1.0)


def timestep_aware(pipe, settings: CalibrationSettings, prompts, generation: dict) -> dict:
    """Run the full-precision pipeline and record the UNet's inputs every cali_st-th call."""
    import torch

    from .. import seeding

    records = []

    def record(module, args, kwargs):
        sample = kwargs.get("sample", args[0] if args else None)
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        states = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        records.append((sample.detach().float().cpu(), torch.as_tensor(timestep).float().cpu(),
                        None if states is None else states.detach().float().cpu()))

    n = settings.cali_n
    seeds = [seeding.prompt_seed(settings.seed + SEED_NAMESPACE, i) for i in range(n)]
    shape = seeding.latent_shape(pipe, int(generation["height"]), int(generation["width"]))
    latents = seeding.initial_latents(seeds, shape).to(pipe.unet.dtype)
    handle = pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.inference_mode():
            if unconditional(pipe):
                from ..uncond import run_unconditional

                run_unconditional(pipe, generation, seeds, output_type="np")
            else:
                pipe(prompt=prompts, latents=latents, num_inference_steps=int(generation["steps"]),
                     guidance_scale=float(generation["guidance"]), height=int(generation["height"]),
                     width=int(generation["width"]), output_type="latent")
    finally:
        handle.remove()
    kept = records[:: settings.cali_st]
    if unconditional(pipe):
        return {"sample": torch.cat([sample for sample, _, _ in kept]),
                "timestep": torch.cat([timestep.reshape(-1)[:1].expand(n) for _, timestep, _ in kept])}
    out = {k: [] for k in TENSORS}
    for sample, timestep, states in kept:
        guided = sample.shape[0] == 2 * n  # classifier-free guidance: [uncond; cond] halves
        out["sample"].append(sample[n:] if guided else sample)
        out["timestep"].append(timestep.reshape(-1)[:1].expand(n))
        out["cond"].append(states[n:] if guided else states)
        out["uncond"].append(states[:n] if guided else text_embeddings(pipe, [""] * n)[0])
    return {k: torch.cat(v) for k, v in out.items()}


def build(pipe, settings: CalibrationSettings, prompts: list[str], generation: dict) -> dict:
    """The calibration tensors of one kind (CPU, float32), keys ``TENSORS``."""
    from .. import seeding

    check_supported(pipe)
    pipe.set_progress_bar_config(disable=True)
    height, width = int(generation["height"]), int(generation["width"])
    steps = int(generation["steps"])
    if settings.kind == "noise_data":
        tensors = noise_data(pipe, settings, prompts, steps, seeding.latent_shape(pipe, height, width))
    elif settings.kind == "raw_data":
        tensors = raw_data(pipe, settings, prompts, steps, (height, width))
    else:
        tensors = timestep_aware(pipe, settings, prompts, generation)
    tensors["timestep"] = tensors["timestep"].float()
    return {k: tensors[k].contiguous() for k in TENSORS if k in tensors}


def save(tensors: dict, path: str | Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    from .. import io

    with io.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})


def load(path: str | Path) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    needed = TENSORS if any(k in tensors for k in TEXT_TENSORS) else ("sample", "timestep")
    missing = [k for k in needed if k not in tensors]
    if missing:
        raise ValueError(f"calibration file {path} lacks {missing}; rebuild it with rule calibration_set")
    return tensors
