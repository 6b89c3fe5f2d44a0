"""Training of the embedded text-to-image model on the synthetic captioned shapes domain.

The embedded model is SD 1.x's architecture at a small size (models.TinySpec). Trained here it is a
real, if small, text-to-image model: its VAE reconstructs the shapes renders and scikit-image
photographs (DiffC and raw-data calibration code photographs), and its UNet, read through a CLIP
text encoder trained with it, draws the shape, colour, position and count a prompt asks for. The
trained weights are committed (data/models/tiny/), so the default run loads them instead of training.

Three phases, as SD was trained:
1. the VAE on renders mixed with photograph crops (MSE with SD's tiny KL weight, plus noise on the
   sampled latent so the decoder tolerates the small latent errors that quantization and DiffC leave);
2. the latents of the renders, scaled by 1 / their standard deviation (how SD set 0.18215);
3. the UNet and the text encoder together on SD's epsilon objective, the caption replaced by the
   empty prompt with probability ``uncond_prob`` so classifier-free guidance has an unconditional
   model to push away from. The text encoder is trained rather than frozen: a frozen *random*
   encoder mixes the tokens through random attention, so "red" would reach the UNet as a different
   vector in every sentence; trained, it learns the attribute words. The sampled weights are an
   exponential moving average of the trained ones (diffusers' EMAModel), as diffusion models' are.

The loops are written here because no installed library trains a diffusers VAE/UNet from in-memory
tensors: diffusers' training scripts are command-line examples that need accelerate and datasets.
Every random draw comes from seeded generators; on a CPU with one thread a training is bit-identical
on a machine, on a GPU it is not (cuDNN's kernels), which is why the weights are committed.

    python -m sdsqueeze.tinytrain --out data/models/tiny --device cuda --vae-seconds 120 --unet-seconds 360
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

# The photographs the VAE also learns to reconstruct, and their crops: the same as the fitted
# unconditional model's (sdsqueeze.tinyfit).
from .tinyfit import FIT_PHOTOS, photo_pool, random_crops  # noqa: F401 - FIT_PHOTOS re-exported
from .tinyweights import COMPONENTS, TRAINING_RECORD, load_weights, save_weights, weights_hash  # noqa: F401 - re-exported


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0          # weights' initialisation and every draw of the training
    data_seed: int = 1     # the rendered training split (the evaluation captions use another seed)
    images: int = 40000
    image_size: int = 128
    vae_steps: int = 3000
    # Batches sized for a GPU: the tiny networks are bound by per-kernel launch and Python dispatch
    # there (about 30 ms per VAE and 70 ms per UNet step at batch 32 / 256, eager), so a batch eight
    # times larger costs little more per step; learning rates scaled by about sqrt(8) with it.
    vae_batch: int = 256
    vae_lr: float = 2e-3
    vae_photo_fraction: float = 0.25  # of each VAE batch: photograph crops, the rest shapes renders
    # Extra N(0, 0.1^2) on the sampled latent (latents have a standard deviation near 1): the decoder
    # learns to tolerate small latent errors, as quantization and DiffC leave them. At 0.5, with the
    # posterior's own spread starting near 1, an under-trained decoder averaged the objects' colours away.
    vae_latent_noise: float = 0.1
    # The posterior's initial log-variance: narrow (std 0.05), so the sampled latent carries the
    # encoder's mean from the first step rather than noise the KL term's tiny weight never shrinks.
    vae_initial_logvar: float = -6.0
    unet_steps: int = 12000
    unet_batch: int = 2048
    unet_lr: float = 2e-3
    text_lr: float = 6e-4
    uncond_prob: float = 0.1
    ema_decay: float = 0.999
    warmup_steps: int = 200
    weight_decay: float = 0.01  # AdamW's, SD's value
    max_grad_norm: float = 1.0  # clipping, against a rare large step at large learning rates
    # bf16 autocast and channels-last activations on a GPU (the weights and the optimizer stay
    # float32); a CPU always trains in float32, so its training stays bit-identical.
    mixed_precision: str = "bf16"
    device: str = "cpu"
    threads: int = 1  # torch threads on a CPU (1: bit-identical on a machine whatever the caller's)
    # Fine-tuning: start from a weights folder this module wrote instead of the seeded weights, and
    # (optionally) keep the VAE encoder, hence the latent space the UNet reads, fixed while the decoder
    # trains on latent crops of ``decoder_crop`` latent pixels.
    init_from: str | None = None
    freeze_vae_encoder: bool = False
    decoder_crop: int = 8
    # When set (seconds), the phase's step count is taken from the speed of its first warm-up steps
    # on this device (the GPU training's way of filling a time budget); the report records the count.
    vae_seconds: float | None = None
    unet_seconds: float | None = None
    # With an output folder (main's --out): the weights so far are written there after the VAE phase
    # and every this many seconds of UNet training (the moving average's), so a job killed at a time
    # limit still leaves its latest weights.
    checkpoint_seconds: float = 60.0


# -- data ------------------------------------------------------------------------------------------

def _render_range(seed: int, start: int, stop: int, size: int):
    """Images start..stop-1 (and their captions) of make_dataset's split ``seed``, so that slices
    render in parallel (make_dataset itself renders from 0, on one core)."""
    from .shapes.dataset import image_rng
    from .shapes.domain import phrasings, render, sample_scene

    images, captions = [], []
    for index in range(start, stop):
        rng = image_rng(seed, index)  # make_dataset's per-image generator, so the slice is the same
        scene = sample_scene(rng)
        images.append(render(scene, size=size, rng=rng))
        captions.append(phrasings(scene))
    return np.stack(images), captions


def shapes_training_set(settings: TrainSettings, workers: int = 1):
    """(images as N x 3 x H x W uint8, captions as one list of phrasings per image), the split
    ``make_dataset(images, data_seed, image_size)`` rendered in ``workers`` processes."""
    n, seed, size = settings.images, settings.data_seed, settings.image_size
    bounds = np.linspace(0, n, max(1, min(workers, n)) + 1).astype(int)
    ranges = [(seed, int(a), int(b), size) for a, b in zip(bounds[:-1], bounds[1:])]
    if len(ranges) == 1:
        parts = [_render_range(*ranges[0])]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(len(ranges), mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(_render_range, *zip(*ranges)))
    images = np.concatenate([p[0] for p in parts])
    captions = [list(c) for p in parts for c in p[1]]
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), captions


def tokenize_captions(tokenizer, captions: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every phrasing's token ids (P x 77) and, per image, the index range of its phrasings, as the
    pipeline tokenizes a prompt (padded to 77). Identical phrasings are tokenized once."""
    cache: dict[str, list[int]] = {}
    rows, starts = [], []
    for phrasings in captions:
        starts.append(len(rows))
        for text in phrasings:
            if text not in cache:
                cache[text] = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length,
                                        truncation=True).input_ids
            rows.append(cache[text])
    starts.append(len(rows))
    return torch.tensor(rows), torch.tensor(starts)


# -- optimisation ----------------------------------------------------------------------------------

def narrow_posterior(vae, logvar: float) -> None:
    """The log-variance half of quant_conv's output starts at ``logvar`` (its weights zero)."""
    channels = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[channels:].zero_()
        vae.quant_conv.bias[channels:].fill_(logvar)


def zero_residual_branches(vae) -> None:
    """Each ResNet block and attention starts as the identity, so the untrained VAE is a shallow
    conv stack that learns in hundreds of steps instead of thousands (SkipInit / Fixup)."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D

    for module in vae.modules():
        if isinstance(module, ResnetBlock2D):
            torch.nn.init.zeros_(module.conv2.weight)
            torch.nn.init.zeros_(module.conv2.bias)
        elif isinstance(module, Attention):
            torch.nn.init.zeros_(module.to_out[0].weight)
            torch.nn.init.zeros_(module.to_out[0].bias)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def on_gpu(settings: TrainSettings) -> bool:
    return settings.device.startswith("cuda")


def autocast(settings: TrainSettings):
    """bf16 autocast on a GPU when asked; a no-op context on a CPU."""
    enabled = on_gpu(settings) and settings.mixed_precision == "bf16"
    return torch.autocast("cuda" if on_gpu(settings) else "cpu", dtype=torch.bfloat16, enabled=enabled)


def memory_format(settings: TrainSettings):
    """channels-last on a GPU (cuDNN's bf16 convolutions run NHWC), the default layout on a CPU."""
    return torch.channels_last if on_gpu(settings) else torch.contiguous_format


def _log(phase: str, message: str) -> None:
    print(f"[tinytrain {phase}] {message}", flush=True)


SPEED_SKIP = 10  # first steps left out of the speed estimate (cuDNN's algorithm search, allocations)
SPEED_STEPS = 30  # the step at which a time-budgeted phase fixes its step count


def _train(param_groups, steps: int, seconds: float | None, settings: TrainSettings, batch_loss,
           after_step=None, phase: str = "", batch: int = 1) -> dict:
    """AdamW (fused on a GPU), linear warm-up then cosine decay to a tenth, gradients clipped, for
    ``steps`` steps of ``batch_loss()``, or for as many as fit in ``seconds`` at the speed measured
    over the warm-up. Returns the loss curve (means over 50-step windows) and the step count. The
    loop never waits for the GPU except to time the warm-up and to log a tenth of the way."""
    gpu = on_gpu(settings)
    optimizer = torch.optim.AdamW(param_groups, weight_decay=settings.weight_decay, **({"fused": True} if gpu else {}))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    base = [group["lr"] for group in optimizer.param_groups]
    warmup = min(settings.warmup_steps, max(1, steps // 10)) if seconds is None else max(settings.warmup_steps, SPEED_STEPS)
    total, curve, window = steps, [], []
    began = time.perf_counter()
    step, timed_from = 0, None
    while step < total:
        progress = (step - warmup) / max(1, total - warmup)
        scale = (step + 1) / warmup if step < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * progress))
        for group, lr in zip(optimizer.param_groups, base):
            group["lr"] = lr * scale
        with autocast(settings):
            loss = batch_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        if after_step is not None:
            after_step()
        window.append(loss.detach())
        step += 1
        if len(window) == 50:
            curve.append(torch.stack(window).mean())  # stays on the device until the end
            window = []
        if seconds is not None and step == SPEED_SKIP:
            _sync(settings.device)
            timed_from = time.perf_counter()
        if seconds is not None and step == SPEED_STEPS:
            _sync(settings.device)
            now = time.perf_counter()
            per_step = (now - timed_from) / (SPEED_STEPS - SPEED_SKIP)
            total = max(SPEED_STEPS + 1, SPEED_STEPS + int((seconds - (now - began)) / per_step))
            warmup = max(SPEED_STEPS, min(warmup, total // 10))  # a slow device still ends on time
            _log(phase, f"{1 / per_step:.1f} steps/s, {batch / per_step:.0f} samples/s at batch {batch}; "
                        f"{total} steps planned for {seconds:g} s")
        if total >= 10 and step % (total // 10) == 0:
            _log(phase, f"step {step}/{total}, loss {float(loss.detach()):.4f}, {time.perf_counter() - began:.0f} s")
    _sync(settings.device)
    return {"steps": total, "seconds": round(time.perf_counter() - began, 1),
            "loss_curve_per_50_steps": [float(v) for v in curve]}


def train_vae(vae, shapes: torch.Tensor, photos: torch.Tensor, settings: TrainSettings,
              generator: torch.Generator) -> dict:
    """Reconstruction MSE plus SD's tiny KL weight, on sampled (and further noised) latents."""
    if settings.freeze_vae_encoder:
        return train_decoder(vae, shapes, photos, settings, generator)
    if settings.init_from is None:
        zero_residual_branches(vae)
        narrow_posterior(vae, settings.vae_initial_logvar)
    device = settings.device
    n_photos = round(settings.vae_batch * settings.vae_photo_fraction)

    def draw(fn, *shape):
        return fn(*shape, generator=generator, device=device)

    layout = memory_format(settings)
    vae.to(memory_format=layout)

    def batch_loss():
        pick = draw(torch.randint, len(shapes), (settings.vae_batch - n_photos,))
        pixels = shapes[pick].float() / 127.5 - 1
        if n_photos:
            pixels = torch.cat([pixels, photos[draw(torch.randint, len(photos), (n_photos,))]])
        pixels = pixels.contiguous(memory_format=layout)
        posterior = vae.encode(pixels).latent_dist
        latent = posterior.mean + posterior.std * draw(torch.randn, posterior.mean.shape)
        if settings.vae_latent_noise:
            latent = latent + settings.vae_latent_noise * draw(torch.randn, latent.shape)
        return (vae.decode(latent).sample.float() - pixels).pow(2).mean() + 1e-6 * posterior.kl().mean()

    vae.train()
    report = _train([{"params": list(vae.parameters()), "lr": settings.vae_lr}], settings.vae_steps,
                    settings.vae_seconds, settings, batch_loss, phase="vae", batch=settings.vae_batch)
    vae.eval()
    vae.to(memory_format=torch.contiguous_format)
    return report


def train_decoder(vae, shapes: torch.Tensor, photos: torch.Tensor, settings: TrainSettings,
                  generator: torch.Generator) -> dict:
    """The decoder alone, the encoder fixed: its posteriors are computed once, and each step decodes
    random latent crops (sampled, plus the latent noise) back to their pixel crops. Cheaper per step
    than whole images through both halves, and the latent space the UNet reads does not move."""
    device, crop = settings.device, settings.decoder_crop
    with torch.no_grad():
        pixels_all = torch.cat([shapes.float() / 127.5 - 1, photos])
        posteriors = [vae.encode(batch).latent_dist for batch in pixels_all.split(64)]
        means = torch.cat([p.mean for p in posteriors])
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    n_photos = round(settings.vae_batch * settings.vae_photo_fraction)
    side, factor = means.shape[-1], pixels_all.shape[-1] // means.shape[-1]

    def draw(fn, *shape):
        return fn(*shape, generator=generator, device=device)

    def batch_loss():
        pick = torch.cat([draw(torch.randint, len(shapes), (settings.vae_batch - n_photos,)),
                          len(shapes) + draw(torch.randint, len(photos), (n_photos,))])
        top, left = (int(v) for v in draw(torch.randint, side - crop + 1, (2,)))
        mean = means[pick, :, top : top + crop, left : left + crop]
        target = pixels_all[pick, :, top * factor : (top + crop) * factor, left * factor : (left + crop) * factor]
        # The posterior's mean, not a sample: the UNet learned (and so generates) the means, and a
        # wide posterior's samples are what taught the first decoder to average colours away.
        latent = mean + settings.vae_latent_noise * draw(torch.randn, mean.shape)
        return (vae.decode(latent).sample.float() - target).pow(2).mean()

    vae.train()
    report = _train([{"params": [p for p in vae.parameters() if p.requires_grad], "lr": settings.vae_lr}],
                    settings.vae_steps, settings.vae_seconds, settings, batch_loss, phase="vae decoder",
                    batch=settings.vae_batch)
    vae.eval()
    vae.requires_grad_(True)
    return {**report, "decoder_only": True}


@torch.no_grad()
def encode_latents(vae, shapes: torch.Tensor, device: str) -> torch.Tensor:
    return torch.cat([vae.encode(batch.to(device).float() / 127.5 - 1).latent_dist.mean
                      for batch in shapes.split(256)])


def train_unet(pipe, latents: torch.Tensor, token_ids: torch.Tensor, starts: torch.Tensor,
               settings: TrainSettings, generator: torch.Generator, checkpoint=None) -> dict:
    """SD's epsilon objective for the UNet and the text encoder together, with caption dropout for
    classifier-free guidance; the pipeline ends up holding the moving averages."""
    from diffusers.training_utils import EMAModel

    device = settings.device
    unet, text_encoder, scheduler = pipe.unet, pipe.text_encoder, pipe.scheduler
    trained = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder})
    # Its decay warms up as (1 + k) / (10 + k) before reaching ema_decay, so the seeded (or starting)
    # weights do not linger in the average of a short training.
    ema = EMAModel(trained.parameters(), decay=settings.ema_decay, foreach=True)
    empty = pipe.tokenizer("", padding="max_length", max_length=token_ids.shape[1], return_tensors="pt").input_ids
    token_ids, starts, empty = token_ids.to(device), starts.to(device), empty.to(device)
    alphas = scheduler.alphas_cumprod.to(device)
    counts = starts[1:] - starts[:-1]
    layout = memory_format(settings)
    unet.to(memory_format=layout)

    def draw(fn, *shape):
        return fn(*shape, generator=generator, device=device)

    def batch_loss():
        batch = settings.unet_batch
        pick = draw(torch.randint, len(latents), (batch,))
        which = (draw(torch.rand, batch) * counts[pick]).long()
        ids = token_ids[starts[pick] + which]
        drop = draw(torch.rand, batch) < settings.uncond_prob
        ids = torch.where(drop[:, None], empty, ids)
        clean = latents[pick]
        timesteps = draw(torch.randint, scheduler.config.num_train_timesteps, (batch,))
        noise = draw(torch.randn, clean.shape)
        alpha = alphas[timesteps].view(-1, 1, 1, 1)
        noisy = (alpha.sqrt() * clean + (1 - alpha).sqrt() * noise).contiguous(memory_format=layout)  # = scheduler.add_noise
        context = text_encoder(ids)[0]
        return (unet(noisy, timesteps, context).sample.float() - noise).pow(2).mean()

    last_saved = [time.perf_counter()]

    def after_step():
        ema.step(trained.parameters())
        if checkpoint is not None and time.perf_counter() - last_saved[0] >= settings.checkpoint_seconds:
            ema.store(trained.parameters())  # the average goes out, the training weights come back
            ema.copy_to(trained.parameters())
            checkpoint({"steps_so_far": ema.optimization_step})
            ema.restore(trained.parameters())
            last_saved[0] = time.perf_counter()

    trained.train()
    report = _train([{"params": list(unet.parameters()), "lr": settings.unet_lr},
                     {"params": list(text_encoder.parameters()), "lr": settings.text_lr}],
                    settings.unet_steps, settings.unet_seconds, settings, batch_loss,
                    after_step=after_step, phase="unet", batch=settings.unet_batch)
    ema.copy_to(trained.parameters())
    trained.eval()
    unet.to(memory_format=torch.contiguous_format)
    return report


# -- the whole training ----------------------------------------------------------------------------

def train_tiny_pipeline(pipe, settings: TrainSettings, checkpoint=None) -> dict:
    """Train ``pipe`` (a seeded tiny pipeline) in place. Returns what was done, for provenance.
    ``checkpoint(partial_report)``, when given, writes the weights so far (TrainSettings.checkpoint_seconds)."""
    threads = torch.get_num_threads()
    if settings.device == "cpu":
        torch.set_num_threads(settings.threads)  # one: the weights never depend on the caller's threads
    try:
        return _train_all(pipe, settings, checkpoint)
    finally:
        torch.set_num_threads(threads)


def _train_all(pipe, settings: TrainSettings, checkpoint=None) -> dict:
    began = time.perf_counter()
    device = settings.device
    torch.manual_seed(settings.seed)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN's fastest algorithm, found once
    # Rendered before the pipeline reaches the GPU: the renderer's worker processes are forked.
    workers = 1 if device == "cpu" else min(16, os.cpu_count() or 1)
    shapes, captions = shapes_training_set(settings, workers)
    pipe.to(device)
    photos = random_crops(photo_pool(), max(64, settings.images // 8), settings.image_size,
                          torch.Generator().manual_seed(settings.seed))
    generator = torch.Generator(device).manual_seed(settings.seed)  # every draw of the loops, on their device
    _log("data", f"{len(shapes)} renders and {len(photos)} photograph crops in {time.perf_counter() - began:.1f} s")
    report: dict = {"settings": asdict(settings), "photos": list(FIT_PHOTOS), "device": device_name(device),
                    "torch": torch.__version__, "data_seconds": round(time.perf_counter() - began, 1)}
    if settings.init_from:
        report["init_from"] = load_weights(pipe, settings.init_from)
        for module in (pipe.vae, pipe.unet, pipe.text_encoder):
            module.requires_grad_(True)
    if device.startswith("cuda"):
        shapes, photos = shapes.to(device), photos.to(device)
    report["vae"] = train_vae(pipe.vae, shapes, photos, settings, generator)
    latents = encode_latents(pipe.vae, shapes, device)
    # SD's way of setting the scaling factor; a fixed encoder keeps the factor the UNet was trained with.
    scaling = pipe.vae.config.scaling_factor if settings.freeze_vae_encoder else float(1.0 / latents.std())
    pipe.vae.register_to_config(scaling_factor=scaling)
    report["vae_scaling_factor"] = scaling
    partial = None
    if checkpoint is not None:
        def partial(extra):
            checkpoint({**report, "unet": {"steps": 0, "seconds": 0.0, "loss_curve_per_50_steps": [], **extra},
                        "partial": True})
        partial({"not_trained_yet": True})
    token_ids, starts = tokenize_captions(pipe.tokenizer, captions)
    if settings.unet_steps or settings.unet_seconds:
        report["unet"] = train_unet(pipe, latents * scaling, token_ids, starts, settings, generator, partial)
    else:  # a decoder-only fine-tuning keeps the UNet and text encoder it started from
        report["unet"] = {"steps": 0, "seconds": 0.0, "loss_curve_per_50_steps": []}
    for module in (pipe.vae, pipe.unet, pipe.text_encoder):
        module.requires_grad_(False)
    pipe.to("cpu")
    report["seconds"] = round(time.perf_counter() - began, 1)
    return report


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"cpu ({platform.machine()})"


# -- the committed weights -------------------------------------------------------------------------

def debias_ema(averaged: dict, first: dict, decay: float, updates: int) -> dict:
    """The trajectory's own average from a plain EMA (torch's AveragedModel: the first update copies
    the weights, each later one keeps ``decay`` of the average), whose first weights still weigh
    decay**(updates - 1) after a short run: Adam's bias correction, applied to the weights.
    ``first`` is the weights at the first update (within one warm-up step of the seeded ones)."""
    left = decay ** (updates - 1)
    return {k: (averaged[k].float() - left * first[k].float()) / (1 - left) for k in averaged}


def write_debiased(weights_dir: str, out: str, command: str) -> None:
    """``weights_dir``'s UNet and text encoder debiased, its VAE as it is, the record kept inside."""
    from . import models

    pipe = models.build_tiny_pipeline(models.TinySpec())  # the seeded weights: the EMA's first update
    first = {name: {k: v.clone() for k, v in getattr(pipe, name).state_dict().items()} for name in ("unet", "text_encoder")}
    record = load_weights(pipe, weights_dir)
    decay, updates = record["settings"]["ema_decay"], record["unet"]["steps"]
    for name in ("unet", "text_encoder"):
        averaged = getattr(pipe, name).state_dict()
        getattr(pipe, name).load_state_dict(debias_ema(averaged, first[name], decay, updates))
    save_weights(pipe, out, {"command": command, "debiased": {"decay": decay, "updates": updates},
                             "previous": record, "settings": record["settings"], "tiny_spec": record["tiny_spec"],
                             "device": device_name("cpu"), "torch": torch.__version__})


def main(argv=None) -> None:
    from . import models

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the safetensors and training.json")
    parser.add_argument("--device", default="cpu")
    for key, value in asdict(TrainSettings()).items():
        if key in ("device", "vae_seconds", "unet_seconds", "init_from", "freeze_vae_encoder"):
            continue
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--vae-seconds", type=float)
    parser.add_argument("--unet-seconds", type=float)
    parser.add_argument("--init-from")
    parser.add_argument("--freeze-vae-encoder", action="store_true")
    parser.add_argument("--debias-ema", metavar="WEIGHTS",
                        help="instead of training: write WEIGHTS (saved by an EMA without warm-up) with "
                             "the UNet and text encoder debiased (debias_ema), for fine-tuning")
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    command = "python -m sdsqueeze.tinytrain " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    if args["debias_ema"]:
        write_debiased(args["debias_ema"], out, command)
        return
    args.pop("debias_ema")
    settings = TrainSettings(**args)
    spec = models.TinySpec(image_size=settings.image_size, seed=settings.seed)
    pipe = models.build_tiny_pipeline(spec)
    provenance = {"command": command, "tiny_spec": asdict(spec)}
    report = train_tiny_pipeline(pipe, settings, lambda partial: save_weights(pipe, out, {**partial, **provenance}))
    record = save_weights(pipe, out, {**report, **provenance})
    print(json.dumps({k: v for k, v in record.items() if k not in ("vae", "unet")}, indent=1))
    for phase in ("vae", "unet"):
        print(phase, record[phase]["steps"], "steps", record[phase]["seconds"], "s, loss",
              [round(x, 4) for x in record[phase]["loss_curve_per_50_steps"][::20]])


if __name__ == "__main__":
    main()
