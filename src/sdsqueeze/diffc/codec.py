"""DiffC on a diffusers pipeline: encode an image to .diffc bytes, decode them back.

Sender and receiver walk the same grid of timesteps t_1 > t_2 > ... > t_r (multiples of
``step_stride``). At each step both know x_t; the model's reverse Gaussian P(x_s | x_t) uses its
own x0 estimate, the sender's Q(x_s | x_t, x0) the true x0 (Theis et al. 2022, eq. for the DDPM
posterior). The two share the variance, so only a mean shift is coded (``rcc``). The first step
comes from pure noise, where P = N(0, (1 - abar) I) and Q = N(sqrt(abar) x0, (1 - abar) I).
After t_r the receiver denoises deterministically (DDIM, eta = 0) and decodes with the VAE.

The posterior and the DDIM update between arbitrary grid points are written out here because
diffusers' schedulers expose samples from their own timestep grids, not the Gaussians' parameters
for a step (t -> s) of our choosing; their ``alphas_cumprod`` and ``prediction_type`` are used.
Guidance is 0: the model is conditioned on the empty prompt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import chunks, rcc
from .bitstream import DiffcFile, DiffcFormatError


class DiffcError(ValueError):
    """The file cannot be decoded with this pipeline, or the request cannot be encoded."""


@dataclass(frozen=True)
class DiffcSettings:
    step_stride: int = 50  # coded timesteps are the multiples of this below the training horizon
    max_chunk_bits: int = 12  # KL per chunk at most (DiffC's chunking)
    margin_bits: int = 3  # the search covers ~2^(chunk KL + margin) candidates
    denoise_steps: int = 20  # DDIM steps per 1000 timesteps of reconstruction
    block_rows_log2: int = 12  # candidates drawn per PRNG seeding (the receiver draws one block)
    seed: int = 0
    cpu_threads: int = 0  # torch CPU threads both sides compute with (0: the current count)
    self_check: bool = False  # decode every file before returning it; refuse if it misses the latent


@dataclass
class EncodeReport:
    """What the sender learned: per step KL and code lengths, and time spent."""

    timesteps: list[int] = field(default_factory=list)
    kl_bits: list[float] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    index_bits: list[float] = field(default_factory=list)  # ideal code length of the step's indices
    side_bits: list[float] = field(default_factory=list)  # ... of its split level and budget classes
    chunk_excess_bits: list[float] = field(default_factory=list)  # worst chunk KL - its budget (<= 0)
    latents: dict = field(default_factory=dict)  # recon timestep -> the sender's x_t there
    seconds: float = 0.0


class DiffusionModel:
    """The parts of a pipeline DiffC needs; the empty-prompt conditioning is computed on first use."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.unet = getattr(pipe, "unet", None)
        if self.unet is None or not hasattr(pipe, "encode_prompt"):
            raise DiffcError(f"DiffC needs a UNet text-to-image pipeline; got {type(pipe).__name__}")
        if getattr(self.unet.config, "addition_embed_type", None):
            raise DiffcError(f"{type(pipe).__name__} needs added conditioning (SDXL-style); "
                             "this DiffC supports SD 1.x/2.x-style UNets only")
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        self.vae = pipe.vae
        self.alphas_cumprod = pipe.scheduler.alphas_cumprod.double().cpu().numpy()
        self.horizon = len(self.alphas_cumprod)
        self.prediction = pipe.scheduler.config.get("prediction_type", "epsilon")
        self._empty_prompts = {}  # CPU thread count -> the empty prompt's text-encoder states

    def empty_prompt(self):
        """The conditioning, computed lazily inside the coder's numeric regime (the text encoder's
        sums depend on it like the UNet's), once per thread count."""
        import torch

        threads = torch.get_num_threads()
        if threads not in self._empty_prompts:
            with torch.no_grad():
                self._empty_prompts[threads] = self.pipe.encode_prompt("", self.device, 1, False)[0]
        return self._empty_prompts[threads]

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def x0_and_eps(self, x_t, t: int):
        """The model's estimate of (x0, eps) at x_t (float32, guidance 0)."""
        import torch

        abar = self.alphas_cumprod[t]
        with torch.no_grad():
            out = self.unet(x_t.to(self.dtype), t, encoder_hidden_states=self.empty_prompt()).sample.float()
        a, b = math.sqrt(abar), math.sqrt(1.0 - abar)
        if self.prediction == "epsilon":
            return (x_t - b * out) / a, out
        if self.prediction == "v_prediction":
            return a * x_t - b * out, b * x_t + a * out
        if self.prediction == "sample":
            return out, (x_t - a * out) / b
        raise DiffcError(f"unsupported prediction_type {self.prediction!r}")

    def image_to_latent(self, image: np.ndarray):
        import torch
        from PIL import Image

        # a PIL image: the processor rescales 8-bit values only for PIL input, not for numpy arrays
        pixels = self.pipe.image_processor.preprocess(Image.fromarray(image)).to(self.device, self.vae.dtype)
        with torch.no_grad():
            latent = self.vae.encode(pixels).latent_dist.mode().float()
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (latent - shift) * self.vae.config.scaling_factor

    def latent_to_image(self, latent) -> np.ndarray:
        import torch

        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        with torch.no_grad():
            pixels = self.vae.decode((latent / self.vae.config.scaling_factor + shift).to(self.vae.dtype)).sample
        array = self.pipe.image_processor.postprocess(pixels.float(), output_type="np")[0]
        return np.round(array * 255).astype(np.uint8)


def model_fingerprint(pipe) -> bytes:
    """8 bytes naming a model: configs, noise schedule, and a few values of every weight tensor.

    Hashing all weights of a large model would take seconds; the first and last values of each
    tensor (in float32) catch a different checkpoint, fine-tune, quantization or dtype.
    """
    import torch

    digest = hashlib.sha256()
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        config = dict(module.config) if hasattr(module.config, "keys") else module.config.to_dict()
        # where it was loaded from, library versions, the load dtype and the class names saving adds
        # do not name the model (an in-memory pipeline and its saved copy must agree)
        config = {k: v for k, v in config.items() if not k.startswith("_")
                  and k not in ("transformers_version", "dtype", "torch_dtype", "architectures")}
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
        with torch.no_grad():
            for pname, param in module.state_dict().items():
                flat = param.detach().reshape(-1)
                sample = torch.cat([flat[:16], flat[-16:]]).float().cpu().numpy()
                digest.update(pname.encode() + str(param.dtype).encode() + sample.tobytes())
    digest.update(pipe.scheduler.alphas_cumprod.double().cpu().numpy().tobytes())
    digest.update(str(pipe.scheduler.config.get("prediction_type", "epsilon")).encode())
    return digest.digest()[:8]


def coded_timesteps(horizon: int, step_stride: int, recon_timestep: int) -> list[int]:
    """t_1 > ... > t_r: the multiples of the stride from just below the horizon down to recon."""
    if recon_timestep % step_stride or not 0 < recon_timestep < horizon:
        raise DiffcError(f"recon timestep {recon_timestep} must be a multiple of step_stride "
                         f"{step_stride} in (0, {horizon})")
    top = (horizon - 1) // step_stride * step_stride
    return list(range(top, recon_timestep - 1, -step_stride))


def posterior(model: DiffusionModel, x_t, t: int | None, s: int):
    """(mean of P, the model's x0, coefficient of x0 in the means, std) of the step t -> s.

    Q's mean is P's with the true x0 in place of the model's; t=None: the first step, from noise.
    """
    abar_s = model.alphas_cumprod[s]
    if t is None:
        return 0.0 * x_t, 0.0 * x_t, math.sqrt(abar_s), math.sqrt(1.0 - abar_s)
    abar_t = model.alphas_cumprod[t]
    alpha = abar_t / abar_s
    beta = 1.0 - alpha
    coef_x0 = math.sqrt(abar_s) * beta / (1.0 - abar_t)
    coef_xt = math.sqrt(alpha) * (1.0 - abar_s) / (1.0 - abar_t)
    std = math.sqrt(beta * (1.0 - abar_s) / (1.0 - abar_t))
    x0_hat, _ = model.x0_and_eps(x_t, t)
    return coef_x0 * x0_hat + coef_xt * x_t, x0_hat, coef_x0, std


def _latent_start(model: DiffusionModel, shape):
    import torch

    return torch.zeros((1, *shape), device=model.device, dtype=torch.float32)


def _device_kind(model: DiffusionModel) -> str:
    return "cuda" if model.device.type == "cuda" else "cpu"


def _cpu_threads(model: DiffusionModel, requested: int) -> int:
    import torch

    if _device_kind(model) == "cuda":
        return 0
    return requested or torch.get_num_threads()


REGIME = 1  # the numeric regime below; recorded in the file (bitstream.DiffcFile.regime)
DEFAULT_MAX_DECODE_BYTES = 8 * 2**30  # refuse files whose candidate blocks would need more


def _regime_settings(torch) -> list[tuple[object, str, object]]:
    """(object, attribute, value) pinned while coding: full-precision float32 everywhere (no
    TF32/bf16 matmuls or convolutions, which a process may have enabled for other work) and no
    kernel choice by benchmarking. Attributes this torch lacks are skipped."""
    backends = torch.backends
    wanted = [(backends.mkldnn, "enabled", True), (backends.cudnn, "benchmark", False),
              (backends.cudnn, "deterministic", True)]
    for holder in ("mkldnn.matmul", "mkldnn.conv", "cuda.matmul", "cudnn.conv"):
        module = backends
        for part in holder.split("."):
            module = getattr(module, part, None)
        wanted.append((module, "fp32_precision", "ieee"))
    return [(obj, attr, value) for obj, attr, value in wanted if obj is not None and hasattr(obj, attr)]


@contextlib.contextmanager
def numeric_regime(cpu_threads: int):
    """Run the numerically relevant operations of a coder under one fixed regime, whatever the
    process did before: ``cpu_threads`` intra-op threads (0: leave as is, CUDA), full float32
    precision, deterministic algorithms. Sender and receiver both enter it, so the receiver
    reproduces the sender's samples bit for bit; the previous settings are restored afterwards.

    torch.set_num_threads also turns MKL's dynamic thread choice off, which a fresh process has on.
    Inter-op threads cannot be changed once torch has run and do not split any single operation.
    """
    import torch

    settings = _regime_settings(torch)
    precision = torch.get_float32_matmul_precision()  # some kernels (CPU bmm) still read this one
    before = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in settings]
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.set_float32_matmul_precision("highest")
        for obj, attr, value in settings:
            setattr(obj, attr, value)
        torch.use_deterministic_algorithms(True, warn_only=True)
        if cpu_threads:
            torch.set_num_threads(cpu_threads)
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        for obj, attr, value in before:  # after the coarse setting: these are the finer ones
            setattr(obj, attr, value)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


def latent_digest(latent) -> bytes:
    """The first bytes of SHA-256 over the clean latent's float32 values: what the receiver must reach."""
    from .bitstream import DIGEST_BYTES

    array = latent.detach().float().cpu().contiguous().numpy()
    return hashlib.sha256(array.tobytes()).digest()[:DIGEST_BYTES]


def encode_rate_points(image: np.ndarray, pipe, recon_timesteps: list[int],
                       settings: DiffcSettings = DiffcSettings(),
                       model: DiffusionModel | None = None) -> tuple[dict[int, bytes], EncodeReport]:
    """One walk down the grid to the lowest recon timestep; each rate point's file is a prefix.

    ``image`` is HxWx3 uint8 at a size the model takes. Returns {recon_timestep: .diffc bytes}.
    """
    model = model or DiffusionModel(pipe)
    threads = _cpu_threads(model, settings.cpu_threads)
    start = time.perf_counter()
    with numeric_regime(threads):
        steps, report, shape = _send(model, image, recon_timesteps, settings)
        files, fingerprint = {}, model_fingerprint(pipe)
        for t_r in recon_timesteps:
            n_steps = len(coded_timesteps(model.horizon, settings.step_stride, t_r))
            clean = ddim_denoise(model, report.latents[t_r], t_r, settings.denoise_steps)
            files[t_r] = DiffcFile(
                fingerprint=fingerprint, dtype=model.dtype_name, device_kind=_device_kind(model),
                latent_shape=shape, seed=settings.seed, step_stride=settings.step_stride,
                recon_timestep=t_r, denoise_steps=settings.denoise_steps,
                max_chunk_bits=settings.max_chunk_bits, margin_bits=settings.margin_bits,
                block_rows_log2=settings.block_rows_log2, cpu_threads=threads, regime=REGIME,
                kl_codes=[code for code, _, _ in steps[:n_steps]], latent_digest=latent_digest(clean),
                payload=_payload(steps[:n_steps], int(np.prod(shape)))).to_bytes()
    if settings.self_check:
        for data in files.values():
            decode_latent(data, pipe, model)  # verifies the stored digest; raises on a mismatch
    report.seconds = time.perf_counter() - start
    return files, report


def _send(model: DiffusionModel, image: np.ndarray, recon_timesteps: list[int], settings: DiffcSettings):
    """The sender's walk: per step (KL byte, chosen chunks, indices); the report; the latent shape."""
    x0 = model.image_to_latent(image)
    shape = tuple(x0.shape[1:])
    dim = int(np.prod(shape))
    grid = coded_timesteps(model.horizon, settings.step_stride, min(recon_timesteps))
    for t_r in recon_timesteps:
        coded_timesteps(model.horizon, settings.step_stride, t_r)
    rows = 2 ** settings.block_rows_log2
    report, steps = EncodeReport(), []
    x_t, t_prev = _latent_start(model, shape), None
    for step, s in enumerate(grid):
        mean_p, x0_hat, coef_x0, std = posterior(model, x_t, t_prev, s)
        shift = (coef_x0 / std * (x0 - x0_hat)).reshape(-1)  # (mean_Q - mean_P) / std
        kl = rcc.kl_bits(shift)
        kl_code = chunks.quantize_kl(kl)
        chosen = chunks.choose_chunks(shift, kl_code, settings.max_chunk_bits, settings.margin_bits,
                                      settings.seed, step)
        indices, z = _select_chunks(shift, chosen, settings.seed, step, rows)
        steps.append((kl_code, chosen, indices))
        report.timesteps.append(s)
        report.kl_bits.append(kl)
        report.chunks.append(chosen.plan.n_chunks)
        report.index_bits.append(sum(rcc.index_code_length(i, chosen.plan.chunk(e))
                                     for i, e in zip(indices, chosen.classes)))
        report.side_bits.append(chunks.side_bits(chosen, dim))
        report.chunk_excess_bits.append(chosen.excess_bits())
        x_t, t_prev = mean_p + std * z.reshape(x_t.shape), s
        if s in recon_timesteps:
            report.latents[s] = x_t.clone()
    return steps, report, shape


def _select_chunks(shift, chosen: chunks.StepChunks, seed: int, step: int, rows: int):
    """ORC for every chunk of a step, batched per budget class (one candidate count per batch)."""
    indices = [0] * len(chosen.parts)
    z = shift.new_zeros(shift.numel())
    for klass in sorted(set(chosen.classes)):
        members = [j for j, e in enumerate(chosen.classes) if e == klass]
        parts = [chosen.parts[j].to(shift.device) for j in members]
        found, values = rcc.select_many([shift[dims] for dims in parts],
                                        [rcc.derive_seed(seed, step, j) for j in members],
                                        chosen.plan.chunk(klass).n_candidates, rows)
        for j, dims, index, value in zip(members, parts, found, values):
            indices[j] = index
            z[dims] = value
    return indices, z


def _payload(steps: list, dim: int) -> bytes:
    """Per step its split level, then per chunk its budget class and index, range coded."""
    import constriction

    split_model, class_model = chunks.side_models(dim)
    encoder = constriction.stream.queue.RangeEncoder()
    for _, chosen, indices in steps:
        encoder.encode(chosen.split_level, split_model)
        for klass, index in zip(chosen.classes, indices):
            encoder.encode(klass, class_model)
            rcc.encode_index(encoder, index, chosen.plan.chunk(klass))
    return encoder.get_compressed().astype("<u4").tobytes()


def encode(image: np.ndarray, pipe, recon_timestep: int,
           settings: DiffcSettings = DiffcSettings()) -> bytes:
    """One rate point: the .diffc bytes that let ``decode`` rebuild x at ``recon_timestep``."""
    files, _ = encode_rate_points(image, pipe, [recon_timestep], settings)
    return files[recon_timestep]


def ddim_denoise(model: DiffusionModel, x_t, t: int, denoise_steps: int):
    """Deterministic DDIM (eta = 0) from x_t to the model's clean latent estimate."""
    n = max(1, round(denoise_steps * t / model.horizon))
    taus = sorted({int(v) for v in np.linspace(t, 0, n + 1).round()[:-1]}, reverse=True)
    for i, tau in enumerate(taus):
        x0_hat, eps = model.x0_and_eps(x_t, tau)
        if i == len(taus) - 1:
            return x0_hat
        abar = model.alphas_cumprod[taus[i + 1]]
        x_t = math.sqrt(abar) * x0_hat + math.sqrt(1.0 - abar) * eps
    raise AssertionError("unreachable")


def decode_memory_bytes(header: DiffcFile) -> int:
    """An upper bound on what decoding allocates beyond the model, from the header alone: the
    largest block of candidates drawn for one chunk, plus a few latent-sized tensors."""
    dim = int(np.prod(header.latent_shape))
    rows = 2 ** header.block_rows_log2
    widest_chunk = max(-(-dim // chunks.base_chunks(code, header.max_chunk_bits)) for code in header.kl_codes)
    return 4 * (rows * widest_chunk + 16 * dim)


def check_header_limits(header: DiffcFile, max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> None:
    """What can be checked without the model: the decode's memory bound."""
    needed = decode_memory_bytes(header)
    if needed > max_decode_bytes:
        raise DiffcFormatError(
            f"decoding would need about {needed / 2**30:.1f} GiB for candidates and latents "
            f"(latent {'x'.join(map(str, header.latent_shape))}, blocks of 2^{header.block_rows_log2} "
            f"candidates), over the limit of {max_decode_bytes / 2**30:.1f} GiB: a crafted or "
            "corrupted header, or raise the limit")


def check_header(header: DiffcFile, pipe, model: DiffusionModel,
                 max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> list[int]:
    """Every header field against the loaded model before anything is allocated; the coded grid."""
    check_compatible(header, pipe, model)
    channels, side = int(model.unet.config.in_channels), int(model.unet.config.sample_size)
    c, h, w = header.latent_shape
    if c != channels or not (1 <= h <= 4 * side and 1 <= w <= 4 * side):
        raise DiffcFormatError(
            f"corrupted header: latent shape {c}x{h}x{w} does not fit the model, whose latent is "
            f"{channels}x{side}x{side} at its native size (at most 4x that side is decoded)")
    check_header_limits(header, max_decode_bytes)
    if (header.device_kind == "cpu") != (header.cpu_threads > 0):
        raise DiffcFormatError(f"corrupted header: {header.cpu_threads} CPU threads for a "
                               f"{header.device_kind} file")
    if not 0 < header.recon_timestep < model.horizon or header.recon_timestep % header.step_stride:
        raise DiffcFormatError(f"corrupted header: recon timestep {header.recon_timestep} is not on the "
                               f"grid of stride {header.step_stride} inside (0, {model.horizon})")
    grid = coded_timesteps(model.horizon, header.step_stride, header.recon_timestep)
    if len(grid) != len(header.kl_codes) or len(header.payload) % 4:
        raise DiffcFormatError("corrupted header: step count or payload size is inconsistent")
    dim = h * w * c
    for step, code in enumerate(header.kl_codes):
        if chunks.base_chunks(code, header.max_chunk_bits) > dim:
            raise DiffcFormatError(f"corrupted header: step {step}'s KL byte {code} needs more chunks "
                                   f"than the latent's {dim} dimensions")
    return grid


def check_compatible(header: DiffcFile, pipe, model: DiffusionModel) -> None:
    """Refuse a file made by another model, dtype or device kind: it would decode to garbage."""
    fingerprint = model_fingerprint(pipe)
    if header.fingerprint != fingerprint:
        raise DiffcError(
            f"wrong model: the file was encoded with model fingerprint {header.fingerprint.hex()}, "
            f"the loaded pipeline is {fingerprint.hex()}; decode with the model (and dtype) that encoded it")
    if header.dtype != model.dtype_name or header.device_kind != _device_kind(model):
        raise DiffcError(
            f"the file was encoded on {header.device_kind} in {header.dtype}; the pipeline runs on "
            f"{_device_kind(model)} in {model.dtype_name}. DiffC reproduces the sender's samples bit for "
            "bit only on the same device kind and dtype")


def decode(data: bytes, pipe, model: DiffusionModel | None = None, return_latent: bool = False):
    """Rebuild the image (HxWx3 uint8) from .diffc bytes; clear errors for foreign or damaged files.

    With ``return_latent``: (image, clean latent before the VAE decoder).
    """
    model = model or DiffusionModel(pipe)
    latent = decode_latent(data, pipe, model)
    with numeric_regime(DiffcFile.from_bytes(data).cpu_threads):
        image = model.latent_to_image(latent)
    return (image, latent) if return_latent else image


def decode_latent(data: bytes, pipe, model: DiffusionModel | None = None,
                  max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES):
    """The receiver's clean-latent estimate (before the VAE decoder), checked against the digest
    the sender stored: a receiver that reaches another latent fails instead of returning it."""
    import constriction

    header = DiffcFile.from_bytes(data)
    model = model or DiffusionModel(pipe)
    grid = check_header(header, pipe, model, max_decode_bytes)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(header.payload, "<u4").astype(np.uint32))
    with numeric_regime(header.cpu_threads):
        latent = _receive(model, header, decoder, grid)
    if latent_digest(latent) != header.latent_digest:
        raise DiffcError(
            f"the decoded latent does not match the sender's (digest {latent_digest(latent).hex()}, "
            f"stored {header.latent_digest.hex()}): this torch build or machine computes the model "
            "differently from the encoder's; refusing to return a wrong image")
    return latent


def _receive(model: DiffusionModel, header: DiffcFile, decoder, grid: list[int]):
    """The receiver's walk down the grid, then DDIM to the clean latent."""
    device, shape = str(model.device), header.latent_shape
    dim = int(np.prod(shape))
    rows = 2 ** header.block_rows_log2
    split_model, class_model = chunks.side_models(dim)
    x_t, t_prev = _latent_start(model, shape), None
    for step, (s, kl_code) in enumerate(zip(grid, header.kl_codes)):
        mean_p, _, _, std = posterior(model, x_t, t_prev, s)
        try:
            plan = chunks.plan_step(kl_code, dim, header.max_chunk_bits, header.margin_bits,
                                    int(decoder.decode(split_model)))
        except chunks.StepTooLargeError:
            raise DiffcFormatError("corrupted payload: a split level gives more chunks than dimensions") from None
        z = x_t.new_zeros(dim)
        for j, dims in enumerate(chunks.partition(dim, plan.n_chunks, header.seed, step)):
            chunk = plan.chunk(int(decoder.decode(class_model)))
            if chunk.kl_bits > chunks.widest_budget(header.max_chunk_bits) + 1e-6:
                raise DiffcFormatError("corrupted payload: a chunk's budget class is beyond the widest search")
            index = rcc.decode_index(decoder, chunk)
            if not 0 <= index < chunk.n_candidates:
                raise DiffcFormatError("corrupted payload: a candidate index is out of range")
            seed = rcc.derive_seed(header.seed, step, j)
            z[dims.to(z.device)] = rcc.candidate(seed, index, chunk.n_candidates, len(dims), rows, device)
        x_t, t_prev = mean_p + std * z.reshape(x_t.shape), s
    return ddim_denoise(model, x_t, header.recon_timestep, header.denoise_steps)


def vae_roundtrip(image: np.ndarray, pipe, model: DiffusionModel | None = None) -> np.ndarray:
    """The VAE's own ceiling: encode and decode, no diffusion, no bits counted."""
    model = model or DiffusionModel(pipe)
    return model.latent_to_image(model.image_to_latent(image))
