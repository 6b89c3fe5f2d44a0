"""Simulated post-training quantization (PTQ) of the UNet, after Q-Diffusion.

Every ``nn.Linear`` and ``nn.Conv2d`` of the UNet is fake-quantized (quantize, then dequantize):

- weights per output channel, asymmetric, ``weight_bits`` (at most 2**b levels per channel);
- input activations per tensor, asymmetric, ``act_bits``, with ranges fixed before generation.

Each step of Q-Diffusion's recipe is its own axis of the variant's ``ptq`` spec, so that a grid
separates their effects:

- ``calibration``: which UNet inputs set the ranges. ``none`` ("W/O") is one real guided UNet
  batch (``naive_batch``): the real text embeddings of ``NAIVE_PROMPT`` (a caption of no
  evaluation image) in the ``[uncond; cond]`` layout, and the pipeline's own initial latents at
  the first timestep of the variant's schedule. Otherwise a calibration set (``calibration.py``).
- ``ranges``: ``minmax`` takes the observed extremes; ``mse`` chooses per weight channel and per
  activation tensor the clipping ratio of least squared error (BRECQ's / Q-Diffusion's range
  initialisation).
- ``reconstruction``: ``adaround`` learns each layer's weight rounding, ``brecq`` each UNet
  block's jointly (``reconstruction.py``); both read the calibration set.
- ``quant_attention``: also fake-quantize the operands of the attention matmuls (``attention.py``).
- ``split_shortcut``: Q-Diffusion's shortcut splitting. In the decoder, the inputs of the
  convolutions that read the concatenation [upsampled features, skip connection] get one
  quantizer per part, weights too, since the two parts have very different ranges.

Why by hand: torchao's fake quantization (QAT configs) covers Linear and Embedding only and uses
dynamic scales; optimum-quanto quantizes activations to int8/float8 only (no 4-bit); brevitas and
nvidia-modelopt are heavy dependencies for what is a range search, a learned rounding and torch's
``fake_quantize_per_tensor_affine`` kernel (used for activations). Weights are rounded by
``round_to_nearest`` rather than torch's per-channel kernel because split layers carry one scale
per (channel, part) and AdaRound needs the same arithmetic with a learned rounding offset.
torch.ao's HistogramObserver would be the library range search, but it assumes 256 target levels
whatever quant_max says, so it mis-chooses 4-bit ranges.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

CALIBRATIONS = ("none", "raw_data", "noise_data", "timestep_aware")
RANGES = ("minmax", "mse")
RECONSTRUCTIONS = ("none", "adaround", "brecq")
QUANT_LAYERS = (nn.Linear, nn.Conv2d)
FIRST_LAST = ("conv_in", "conv_out")
# The W/O batch's caption: a COCO-style caption written for this purpose, so it is no evaluation
# prompt (a test checks it against the prompt sets); its seed is offset like calibration seeds.
NAIVE_PROMPT = "a kitchen with a wooden table, chairs and a window above the sink"
NAIVE_SEED = 7_919
SEARCH_ELEMENTS = 2**15  # activation elements per layer and batch the range search scores


@dataclass(frozen=True)
class PTQSpec:
    weight_bits: int
    act_bits: int
    calibration: str = "none"
    ranges: str = "minmax"
    reconstruction: str = "none"
    quant_attention: bool = False
    softmax_bits: int = 8           # Q-Diffusion's sm_abit: the softmax output stays at 8 bits
    first_last_8bit: bool = True    # BRECQ / Q-Diffusion keep the first and last layer at 8 bits
    split_shortcut: bool = False
    search_grid: int = 20           # clipping ratios tried by the MSE range search
    calibration_batch: int = 8      # calibration samples per UNet call
    naive_batch: int = 2            # prompts (rows before guidance doubling) of the W/O batch
    recon_iterations: int = 20000   # Q-Diffusion's defaults: 20k Adam steps per layer/block,
    recon_lr: float = 1e-3          # Adam's default rate on the rounding variables,
    recon_batch_size: int = 32      # 32 UNet rows per step,
    recon_weight: float = 0.01      # regularizer weight
    recon_samples: int = 256        # calibration samples whose UNet activations are stored
    calibration_file: str | None = None
    state_file: str | None = None   # a calibrated variant's stored quantizers (rule ptq_state)

    def __post_init__(self):
        for key, allowed in (("calibration", CALIBRATIONS), ("ranges", RANGES),
                             ("reconstruction", RECONSTRUCTIONS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"ptq.{key} is '{getattr(self, key)}'; allowed: {', '.join(allowed)}")
        for key in ("weight_bits", "act_bits", "softmax_bits"):
            if not 2 <= getattr(self, key) <= 8:
                raise ValueError(f"ptq.{key} must be between 2 and 8, got {getattr(self, key)}")
        if self.reconstruction != "none" and not self.calibrated:
            raise ValueError(f"ptq.reconstruction '{self.reconstruction}' needs a calibration set; "
                             "set ptq.calibration to raw_data, noise_data or timestep_aware")

    @property
    def calibrated(self) -> bool:
        return self.calibration != "none"

    @property
    def search(self) -> bool:
        return self.ranges == "mse"

    @classmethod
    def from_variant(cls, spec: dict) -> PTQSpec | None:
        options = spec.get("ptq")
        return cls(**options) if options else None


# --- quantization arithmetic ------------------------------------------------------------------

def qparams(low: torch.Tensor, high: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric (scale, zero point) for integer range [0, 2**bits - 1]; zero stays exact."""
    qmax = 2**bits - 1
    low, high = low.float().clamp(max=0), high.float().clamp(min=0)
    scale = ((high - low) / qmax).clamp(min=1e-8)
    zero_point = torch.round(-low / scale).clamp(0, qmax).to(torch.int32)
    return scale, zero_point


def clip_ratios(grid: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Candidate fractions of the observed range, 1.0 (min-max) first, on the tensors' device."""
    return torch.linspace(1.0, 0.2, max(grid, 1), device=device)


def candidate_errors(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, bits: int,
                     max_elements: int = 2**25) -> torch.Tensor:
    """Squared quantization error of rows of ``x`` (r, m) for K candidate ranges (K, r) -> (K, r).

    The same arithmetic as torch's fake-quantize kernels, written out so that many candidates are
    evaluated in one broadcast instead of one kernel call each (only used to choose ranges);
    candidates go in chunks so that SD-sized activations stay within memory.
    """
    scale, zero_point = qparams(low, high, bits)
    scale, zero_point = scale[..., None], zero_point[..., None].float()
    chunk = max(1, max_elements // max(x.numel(), 1))
    errors = []
    for start in range(0, scale.shape[0], chunk):
        s, z = scale[start : start + chunk], zero_point[start : start + chunk]
        q = (torch.round(x[None] / s) + z).clamp(0, 2**bits - 1)
        errors.append(((q - z) * s - x[None]).pow(2).sum(dim=-1))
    return torch.cat(errors)


def weight_range(weight2d: torch.Tensor, bits: int, search: bool, grid: int):
    """Per-channel (low, high): min-max, or the clipping with least squared error per channel."""
    low, high = weight2d.aminmax(dim=1)
    if not search:
        return low, high
    ratios = clip_ratios(grid, weight2d.device)[:, None]
    errors = candidate_errors(weight2d, low[None] * ratios, high[None] * ratios, bits)  # (K, out)
    best = ratios[errors.argmin(dim=0), 0]
    return low * best, high * best


# --- which layers, at which bits ----------------------------------------------------------------

def quant_layers(unet: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in unet.named_modules():
        if isinstance(module, QUANT_LAYERS):
            yield name, module


def layer_bits(name: str, spec: PTQSpec) -> tuple[int, int]:
    if spec.first_last_8bit and name in FIRST_LAST:
        return max(spec.weight_bits, 8), max(spec.act_bits, 8)
    return spec.weight_bits, spec.act_bits


def shortcut_splits(unet: nn.Module) -> dict[str, int]:
    """Layer name -> channels of the upsampled path at the decoder's skip concatenations.

    In diffusers' up blocks each resnet reads cat([hidden, skip], dim=1); hidden has the channels
    of the previous resnet's output (the mid block's for the first one). conv1 (after norm and
    SiLU, which act per channel group) and the 1x1 conv_shortcut both read that concatenation.
    """
    splits = {}
    previous = unet.mid_block.resnets[-1].out_channels
    for b, block in enumerate(unet.up_blocks):
        for r, resnet in enumerate(block.resnets):
            if resnet.in_channels > previous:
                for part in ("conv1", "conv_shortcut"):
                    if getattr(resnet, part, None) is not None:
                        splits[f"up_blocks.{b}.resnets.{r}.{part}"] = previous
            previous = resnet.out_channels
    return splits


def parts(channels: int, split: int | None) -> list[slice]:
    return [slice(0, channels)] if not split else [slice(0, split), slice(split, channels)]


# --- weights ------------------------------------------------------------------------------------

def weight_qparams(weight: torch.Tensor, bits: int, split: int | None, search: bool, grid: int):
    """(scale, zero point) of every weight element (per output channel and input part)."""
    scale = torch.empty_like(weight, dtype=torch.float32)
    zero_point = torch.empty_like(weight, dtype=torch.float32)
    for part in parts(weight.shape[1], split):
        piece = weight[:, part].float()
        flat = piece.reshape(piece.shape[0], -1)
        s, z = qparams(*weight_range(flat, bits, search, grid), bits)
        shape = (-1,) + (1,) * (piece.dim() - 1)
        scale[:, part] = s.view(shape).expand_as(piece)
        zero_point[:, part] = z.float().view(shape).expand_as(piece)
    return scale, zero_point


def round_to_nearest(weight: torch.Tensor, scale, zero_point, bits: int) -> torch.Tensor:
    """Quantize-dequantize with the given per-element (scale, zero point), rounding to nearest."""
    q = (torch.round(weight.float() / scale) + zero_point).clamp(0, 2**bits - 1)
    return (q - zero_point) * scale


def weight_quantizers(unet: nn.Module, spec: PTQSpec, splits: dict[str, int]) -> dict[str, tuple]:
    """Layer name -> (bits, scale, zero point): the ranges every rounding method starts from."""
    out = {}
    for name, module in quant_layers(unet):
        bits, _ = layer_bits(name, spec)
        out[name] = (bits, *weight_qparams(module.weight.detach(), bits, splits.get(name),
                                           spec.search, spec.search_grid))
    return out


def replace_weights(unet: nn.Module, weights: dict[str, torch.Tensor]) -> int:
    """Give each layer its quantized weight (new tensors: nothing in place)."""
    modules = dict(unet.named_modules())
    for name, weight in weights.items():
        old = modules[name].weight
        modules[name].weight = nn.Parameter(weight.to(old.device, old.dtype), requires_grad=False)
    return len(weights)


def quantize_weights(unet: nn.Module, spec: PTQSpec, splits: dict[str, int], batches=None) -> int:
    """Round every layer's weight: to nearest, or as learned by AdaRound / BRECQ on ``batches``."""
    quantizers = weight_quantizers(unet, spec, splits)
    if spec.reconstruction == "none":
        modules = dict(unet.named_modules())
        weights = {name: round_to_nearest(modules[name].weight.detach(), s, z, bits)
                   for name, (bits, s, z) in quantizers.items()}
    else:
        from .reconstruction import ReconstructionSettings, reconstruct

        settings = ReconstructionSettings(spec.recon_iterations, spec.recon_lr, spec.recon_batch_size,
                                          spec.recon_weight)
        weights = reconstruct(unet, quantizers, batches, spec.reconstruction, settings)
    return replace_weights(unet, weights)


# --- activations ----------------------------------------------------------------------------------

class ActQuantizer:
    """Per-tensor input quantizer of one layer (one per part when the input is split)."""

    def __init__(self, bits: int, split: int | None, grid: int):
        self.bits, self.split, self.grid = bits, split, grid
        self.low: list[float] | None = None
        self.high: list[float] | None = None
        self.errors: list[torch.Tensor] | None = None
        self.mode = "observe"  # observe -> search (optional) -> quantize

    def pieces(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x[:, part] for part in parts(x.shape[1], self.split)]

    def observe(self, x: torch.Tensor) -> None:
        stats = [piece.detach().float().aminmax() for piece in self.pieces(x)]
        lows, highs = [float(s.min) for s in stats], [float(s.max) for s in stats]
        if self.low is None:
            self.low, self.high = lows, highs
        else:
            self.low = [min(a, b) for a, b in zip(self.low, lows)]
            self.high = [max(a, b) for a, b in zip(self.high, highs)]

    def accumulate_errors(self, x: torch.Tensor) -> None:
        ratios = clip_ratios(self.grid, x.device)
        if self.errors is None:
            self.errors = [torch.zeros(len(ratios), dtype=torch.float64) for _ in self.pieces(x)]
        for i, piece in enumerate(self.pieces(x)):
            flat = piece.detach().float().reshape(1, -1)
            # An evenly strided subset estimates the error of each clipping well enough (the
            # extremes, which set the candidates, were observed on every element in pass 1).
            flat = flat[:, :: max(1, flat.shape[1] // SEARCH_ELEMENTS)]
            errors = candidate_errors(flat, self.low[i] * ratios[:, None], self.high[i] * ratios[:, None],
                                      self.bits)
            self.errors[i] += errors[:, 0].double().cpu()

    def settle_search(self) -> None:
        ratios = clip_ratios(self.grid)
        best = [float(ratios[int(torch.argmin(e))]) for e in self.errors]
        self.low = [lo * r for lo, r in zip(self.low, best)]
        self.high = [hi * r for hi, r in zip(self.high, best)]
        self.errors = None

    def freeze(self) -> None:
        """Fix (scale, zero point) per part once, so generation does no range arithmetic."""
        self.frozen = []
        for low, high in zip(self.low, self.high):
            scale, zero_point = qparams(torch.tensor(low), torch.tensor(high), self.bits)
            self.frozen.append((float(scale), int(zero_point)))
        self.mode = "quantize"

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        qmax = 2**self.bits - 1
        pieces = [torch.fake_quantize_per_tensor_affine(p.float(), scale, zero_point, 0, qmax).to(x.dtype)
                  for p, (scale, zero_point) in zip(self.pieces(x), self.frozen)]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Observe or score ``x`` while calibrating (returned unchanged), quantize it afterwards."""
        if self.mode == "observe":
            self.observe(x)
        elif self.mode == "search":
            self.accumulate_errors(x)
        else:
            return self.quantize(x)
        return x

    def __call__(self, module, args):
        if self.mode != "quantize":
            self.apply(args[0])
            return None
        return (self.quantize(args[0]), *args[1:])


def attach_act_quantizers(unet: nn.Module, spec: PTQSpec, splits: dict[str, int]) -> dict[str, ActQuantizer]:
    quantizers = {}
    for name, module in quant_layers(unet):
        _, bits = layer_bits(name, spec)
        quantizer = ActQuantizer(bits, splits.get(name), spec.search_grid)
        module.register_forward_pre_hook(quantizer)
        module._ptq_act = quantizer  # read by activation_ranges(); a plain attribute, not a submodule
        quantizers[name] = quantizer
    return quantizers


def activation_ranges(unet: nn.Module) -> dict[str, list[tuple[float, float]]]:
    """Layer name -> the (low, high) of each input part, as fixed for generation."""
    return {name: list(zip(m._ptq_act.low, m._ptq_act.high))
            for name, m in quant_layers(unet) if hasattr(m, "_ptq_act")}


# --- feeding the UNet ----------------------------------------------------------------------------

def calibration_batches(tensors: dict, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(sample, timestep, text) UNet inputs, laid out as the guided pipeline does: [uncond; cond];
    (sample, timestep, None) for an unconditional model's set, which has no text."""
    n = tensors["sample"].shape[0]
    for start in range(0, n, batch):
        rows = slice(start, start + batch)
        x = tensors["sample"][rows]
        t = tensors["timestep"][rows]
        if "cond" not in tensors:
            yield x, t, None
            continue
        yield (torch.cat([x, x]), torch.cat([t, t]),
               torch.cat([tensors["uncond"][rows], tensors["cond"][rows]]))


def naive_batch(pipe, spec: PTQSpec, height: int, width: int, steps: int):
    """The W/O batch: one real guided UNet call, as the pipeline makes its first one.

    ``naive_batch`` copies of NAIVE_PROMPT's text embeddings with the empty prompt's, in the
    ``[uncond; cond]`` layout; the pipeline's own initial latents (seeded like any prompt's, from
    NAIVE_SEED) scaled to the first timestep of the variant's schedule.
    """
    from ..seeding import initial_latents, latent_shape, prompt_seed
    from .calibration import fresh_scheduler, text_embeddings

    rows = spec.naive_batch
    scheduler = fresh_scheduler(pipe, steps)
    timestep = scheduler.timesteps[0]
    seeds = [prompt_seed(NAIVE_SEED, i) for i in range(rows)]
    latents = initial_latents(seeds, latent_shape(pipe, height, width)) * scheduler.init_noise_sigma
    sample = scheduler.scale_model_input(latents, timestep)
    from ..uncond import is_unconditional

    if is_unconditional(pipe):  # the unconditional pipeline's own first call: no text, no doubling
        return sample, torch.as_tensor(timestep).float().expand(rows), None
    cond, uncond = text_embeddings(pipe, [NAIVE_PROMPT] * rows)
    timesteps = torch.as_tensor(timestep).float().expand(2 * rows)
    return torch.cat([sample, sample]), timesteps, torch.cat([uncond, cond])


def run_unet(unet: nn.Module, batches) -> None:
    from .reconstruction import text_input

    device, dtype = unet.device, unet.dtype
    with torch.inference_mode():
        for sample, timestep, text in batches:
            unet(sample.to(device, dtype), timestep.to(device), **text_input(text, device, dtype))


def calibrate(unet: nn.Module, quantizers: dict[str, ActQuantizer], batches: list, search: bool) -> None:
    """Observe ranges (pass 1); with ``search``, pick the clipping of least error (pass 2)."""
    run_unet(unet, batches)
    if search:
        for q in quantizers.values():
            q.mode = "search"
        run_unet(unet, batches)
        for q in quantizers.values():
            q.settle_search()
    for q in quantizers.values():
        q.freeze()


def calibration_tensors(pipe, spec: PTQSpec, generation: dict) -> dict:
    """The UNet inputs that set the ranges: the calibration set, or the single W/O batch's."""
    from . import calibration

    if not spec.calibrated:
        sample, timestep, text = naive_batch(pipe, spec, int(generation["height"]), int(generation["width"]),
                                             int(generation["steps"]))
        rows = spec.naive_batch
        if text is None:
            return {"sample": sample, "timestep": timestep}
        return {"sample": sample[:rows], "timestep": timestep[:rows], "uncond": text[:rows], "cond": text[rows:]}
    if not spec.calibration_file:
        raise ValueError(f"ptq.calibration '{spec.calibration}' needs its calibration file "
                         "(rule ptq_state passes it); none was given")
    return calibration.load(spec.calibration_file)


def evenly_spread(tensors: dict, samples: int) -> dict:
    """At most ``samples`` calibration samples, evenly strided over the set: a timestep-aware set
    is ordered by step, so its first samples would all share the noisiest timestep."""
    n = tensors["sample"].shape[0]
    picks = torch.linspace(0, n - 1, min(samples, n)).round().long().unique()
    return {key: value[picks] for key, value in tensors.items()}


def attach_quantizers(unet: nn.Module, spec: PTQSpec, splits: dict[str, int]) -> dict[str, ActQuantizer]:
    """Every activation quantizer: layer inputs and, with quant_attention, the matmul operands."""
    quantizers = attach_act_quantizers(unet, spec, splits)
    if spec.quant_attention:
        from .attention import attach_attention_quantizers

        quantizers.update(attach_attention_quantizers(unet, spec, ActQuantizer))
    return quantizers


def quantize_unet(pipe, spec: PTQSpec, generation: dict) -> dict:
    """Fake-quantize ``pipe.unet`` in place of its modules (the pipeline must be a fresh load)."""
    unet = pipe.unet
    splits = shortcut_splits(unet) if spec.split_shortcut else {}
    if spec.state_file:
        return restore_state(unet, spec, splits)
    tensors = calibration_tensors(pipe, spec, generation)
    batches = list(calibration_batches(tensors, spec.calibration_batch))
    recon = list(calibration_batches(evenly_spread(tensors, spec.recon_samples), spec.calibration_batch))
    weights = quantize_weights(unet, spec, splits, recon)
    quantizers = attach_quantizers(unet, spec, splits)
    calibrate(unet, quantizers, batches, search=spec.search)
    unet._ptq_quantizers = quantizers  # read by save_state(); a plain attribute, not a submodule
    return {**asdict(spec), "layers": weights, "split_layers": len(splits),
            "calibration_samples": int(tensors["sample"].shape[0]), "range_method": spec.ranges,
            "attention_quantizers": len(quantizers) - weights}


# --- the calibrated state, computed once per variant ---------------------------------------------------

def save_state(unet: nn.Module, path, notes: dict) -> None:
    """Quantized weights and every quantizer's (low, high) per part, in float64 so that a restored
    UNet computes exactly the same scales (bit-identical images)."""
    import json

    from safetensors.torch import save_file

    from .. import io

    tensors = {f"weight/{name}": module.weight.detach().float().cpu().contiguous()
               for name, module in quant_layers(unet)}
    tensors.update({f"range/{name}": torch.tensor([q.low, q.high], dtype=torch.float64).T.contiguous()
                    for name, q in unet._ptq_quantizers.items()})
    plain_notes = {k: v for k, v in notes.items() if k not in ("calibration_file", "state_file")}
    with io.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"notes": json.dumps(plain_notes)})


def restore_state(unet: nn.Module, spec: PTQSpec, splits: dict[str, int]) -> dict:
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(spec.state_file)
    layers = [name for name, _ in quant_layers(unet)]
    missing = [name for name in layers if f"weight/{name}" not in tensors]
    if missing:
        raise ValueError(f"ptq state {spec.state_file} lacks the weights of {missing[:3]}; it belongs to "
                         "another model or spec: delete it and rerun rule ptq_state")
    count = replace_weights(unet, {name: tensors[f"weight/{name}"] for name in layers})
    quantizers = attach_quantizers(unet, spec, splits)
    for name, quantizer in quantizers.items():
        ranges = tensors[f"range/{name}"]
        quantizer.low, quantizer.high = ranges[:, 0].tolist(), ranges[:, 1].tolist()
        quantizer.freeze()
    with safe_open(spec.state_file, "pt") as handle:
        notes = json.loads(handle.metadata()["notes"])
    return {**notes, "layers": count, "state_file": spec.state_file}


def apply_ptq(prepared) -> None:
    """Variant technique (key ``ptq``): simulated W/A quantization of the UNet."""
    spec = PTQSpec.from_variant(prepared.spec)
    if spec is None:
        return
    if getattr(prepared.pipe, "unet", None) is None:
        raise ValueError("ptq quantizes a UNet; this pipeline has none (e.g. SD3's transformer)")
    prepared.notes["ptq"] = quantize_unet(prepared.pipe, spec, prepared.spec)


# --- sizes -----------------------------------------------------------------------------------------

SCALE_BITS = 32  # one float32 scale per output channel (and part); zero points take b bits


def unet_size(unet: nn.Module, spec: PTQSpec | None, dtype_bytes: int) -> dict:
    """Bits-accounted size: quantized weights at b bits plus scales/zero points; the rest at dtype."""
    splits = shortcut_splits(unet) if spec and spec.split_shortcut else {}
    quantized_bits, quantized_params, weight_ids = 0, 0, set()
    if spec is not None:
        for name, module in quant_layers(unet):
            bits, _ = layer_bits(name, spec)
            weight = module.weight
            n_parts = len(parts(weight.shape[1], splits.get(name)))
            quantized_bits += weight.numel() * bits + weight.shape[0] * n_parts * (SCALE_BITS + bits)
            quantized_params += weight.numel()
            weight_ids.add(id(weight))
    other = sum(p.numel() for p in unet.parameters() if id(p) not in weight_ids)
    total_bytes = quantized_bits / 8 + other * dtype_bytes
    return {"quantized_params": quantized_params, "other_params": other, "bytes": total_bytes}


DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def empty_unet(pipeline_path: str) -> nn.Module:
    """The pipeline's UNet with shapes only (meta tensors): sizes need no weights in memory."""
    from pathlib import Path

    import diffusers
    from accelerate import init_empty_weights

    if not (Path(pipeline_path) / "unet").is_dir():
        raise ValueError(f"ptq sizes need a UNet; {pipeline_path} has no unet/ folder")
    config = diffusers.UNet2DConditionModel.load_config(pipeline_path, subfolder="unet")
    # The class its config names: UNet2DConditionModel, or an unconditional model's UNet2DModel.
    unet_class = getattr(diffusers, config.get("_class_name", "UNet2DConditionModel"))
    with init_empty_weights():
        return unet_class.from_config(config)


def size_table(unet: nn.Module, specs: list[dict], reference: str):
    """One row per variant spec: bits-accounted size and its ratio to the reference's."""
    import pandas as pd

    rows = []
    for spec in specs:
        quant = PTQSpec.from_variant(spec)
        size = unet_size(unet, quant, DTYPE_BYTES[spec["dtype"]])
        rows.append({
            "variant": spec["name"],
            "weight_bits": quant.weight_bits if quant else 8 * DTYPE_BYTES[spec["dtype"]],
            "act_bits": quant.act_bits if quant else 8 * DTYPE_BYTES[spec["dtype"]],
            "calibration": quant.calibration if quant else "",
            "dtype": spec["dtype"],
            **size,
            "mb": size["bytes"] / 2**20,
            "accounting": "ptq: b-bit weights + per-channel scale/zero point" if quant else "dtype",
        })
    table = pd.DataFrame(rows)
    reference_bytes = table.loc[table.variant == reference, "bytes"]
    table["ratio_to_reference"] = table["bytes"] / float(reference_bytes.iloc[0]) if len(reference_bytes) else float("nan")
    return table
