"""Simulated post-training quantization (PTQ) of the UNet, after Q-Diffusion.

Every ``nn.Linear`` and ``nn.Conv2d`` of the UNet is fake-quantized (quantize, then dequantize):

- weights per output channel, asymmetric, ``weight_bits`` (at most 2**b levels per channel);
- input activations per tensor, asymmetric, ``act_bits``, with ranges fixed before generation.

"With calibration", activation ranges come from a calibration set (see ``calibration.py``) and
both weight and activation ranges are chosen by a mean-squared-error search over clipping ratios
(BRECQ's / Q-Diffusion's range initialisation). "Without calibration" uses the same quantizers
with naive ranges: weights min-max per channel, activations the min-max of one random batch.

The attention's own products (QK^T, softmax, PV) stay in full precision: Q-Diffusion keeps the
softmax at higher precision, and here q, k and v are already outputs of quantized layers.
Optional (``split_shortcut``): Q-Diffusion's shortcut splitting — in the decoder, the inputs of
the convolutions that read the concatenation [upsampled features, skip connection] get one
quantizer per part, weights too, since the two parts have very different ranges.

Why by hand: torchao's fake quantization (QAT configs) covers Linear and Embedding only and uses
dynamic scales; optimum-quanto quantizes activations to int8/float8 only (no 4-bit); brevitas and
nvidia-modelopt are heavy dependencies for what is a range search plus torch's own
``fake_quantize_per_channel_affine`` / ``fake_quantize_per_tensor_affine`` kernels (used here).
torch.ao's HistogramObserver would be the library range search, but it assumes 256 target levels
whatever quant_max says, so it mis-chooses 4-bit ranges.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

CALIBRATIONS = ("none", "raw_data", "noise_data", "timestep_aware")
QUANT_LAYERS = (nn.Linear, nn.Conv2d)
FIRST_LAST = ("conv_in", "conv_out")
NAIVE_SEED = 0
SEARCH_ELEMENTS = 2**15  # activation elements per layer and batch the range search scores


@dataclass(frozen=True)
class PTQSpec:
    weight_bits: int
    act_bits: int
    calibration: str = "none"
    first_last_8bit: bool = True    # BRECQ / Q-Diffusion keep the first and last layer at 8 bits
    split_shortcut: bool = False
    search_grid: int = 20           # clipping ratios tried by the MSE range search
    calibration_batch: int = 8      # calibration samples per UNet call
    naive_batch: int = 2            # rows of the single random batch "without calibration"
    calibration_file: str | None = None

    def __post_init__(self):
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"ptq.calibration is '{self.calibration}'; allowed: {', '.join(CALIBRATIONS)}")
        for key in ("weight_bits", "act_bits"):
            if not 2 <= getattr(self, key) <= 8:
                raise ValueError(f"ptq.{key} must be between 2 and 8, got {getattr(self, key)}")

    @property
    def calibrated(self) -> bool:
        return self.calibration != "none"

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


def fake_quant_channels(weight2d: torch.Tensor, low, high, bits: int) -> torch.Tensor:
    scale, zero_point = qparams(low, high, bits)
    return torch.fake_quantize_per_channel_affine(weight2d, scale, zero_point, 0, 0, 2**bits - 1)


def clip_ratios(grid: int) -> torch.Tensor:
    """Candidate fractions of the observed range, 1.0 (min-max) first."""
    return torch.linspace(1.0, 0.2, max(grid, 1))


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
    ratios = clip_ratios(grid)[:, None]
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

def quantize_weights(unet: nn.Module, spec: PTQSpec, splits: dict[str, int]) -> int:
    """Replace each layer's weight by its fake-quantized copy (new tensors: nothing in place)."""
    count = 0
    for name, module in quant_layers(unet):
        bits, _ = layer_bits(name, spec)
        weight = module.weight.detach()
        quantized = torch.empty_like(weight, dtype=torch.float32)
        for part in parts(weight.shape[1], splits.get(name)):
            piece = weight[:, part].float()
            flat = piece.reshape(piece.shape[0], -1)
            low, high = weight_range(flat, bits, spec.calibrated, spec.search_grid)
            quantized[:, part] = fake_quant_channels(flat, low, high, bits).reshape(piece.shape)
        module.weight = nn.Parameter(quantized.to(weight.dtype), requires_grad=False)
        count += 1
    return count


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
        ratios = clip_ratios(self.grid)
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

    def __call__(self, module, args):
        x = args[0]
        if self.mode == "observe":
            self.observe(x)
            return None
        if self.mode == "search":
            self.accumulate_errors(x)
            return None
        return (self.quantize(x), *args[1:])


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
    """(sample, timestep, text) UNet inputs, laid out as the guided pipeline does: [uncond; cond]."""
    n = tensors["sample"].shape[0]
    for start in range(0, n, batch):
        rows = slice(start, start + batch)
        x = tensors["sample"][rows]
        t = tensors["timestep"][rows]
        yield (torch.cat([x, x]), torch.cat([t, t]),
               torch.cat([tensors["uncond"][rows], tensors["cond"][rows]]))


def naive_batch(pipe, spec: PTQSpec, height: int, width: int):
    """One random batch: Gaussian latents, uniform timesteps, Gaussian text embeddings."""
    from ..seeding import latent_shape

    unet = pipe.unet
    generator = torch.Generator("cpu").manual_seed(NAIVE_SEED)
    rows = spec.naive_batch
    shape = latent_shape(pipe, height, width)
    tokens = getattr(pipe.tokenizer, "model_max_length", 77)
    return (torch.randn((rows, *shape), generator=generator),
            torch.randint(pipe.scheduler.config.num_train_timesteps, (rows,), generator=generator).float(),
            torch.randn((rows, tokens, unet.config.cross_attention_dim), generator=generator))


def run_unet(unet: nn.Module, batches) -> None:
    device, dtype = unet.device, unet.dtype
    with torch.inference_mode():
        for sample, timestep, text in batches:
            unet(sample.to(device, dtype), timestep.to(device), encoder_hidden_states=text.to(device, dtype))


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


def quantize_unet(pipe, spec: PTQSpec, height: int, width: int) -> dict:
    """Fake-quantize ``pipe.unet`` in place of its modules (the pipeline must be a fresh load)."""
    from . import calibration

    unet = pipe.unet
    splits = shortcut_splits(unet) if spec.split_shortcut else {}
    weights = quantize_weights(unet, spec, splits)
    quantizers = attach_act_quantizers(unet, spec, splits)
    if spec.calibrated and not spec.calibration_file:
        raise ValueError(f"ptq.calibration '{spec.calibration}' needs its calibration file "
                         "(rule generate passes it); none was given")
    if spec.calibrated:
        tensors = calibration.load(spec.calibration_file)
        batches = list(calibration_batches(tensors, spec.calibration_batch))
        samples = int(tensors["sample"].shape[0])
    else:
        batches, samples = [naive_batch(pipe, spec, height, width)], spec.naive_batch
    calibrate(unet, quantizers, batches, search=spec.calibrated)
    return {**asdict(spec), "layers": weights, "split_layers": len(splits),
            "calibration_samples": samples,
            "range_method": "mse-search" if spec.calibrated else "min-max"}


def apply_ptq(prepared) -> None:
    """Variant technique (key ``ptq``): simulated W/A quantization of the UNet."""
    spec = PTQSpec.from_variant(prepared.spec)
    if spec is None:
        return
    if getattr(prepared.pipe, "unet", None) is None:
        raise ValueError("ptq quantizes a UNet; this pipeline has none (e.g. SD3's transformer)")
    prepared.notes["ptq"] = quantize_unet(prepared.pipe, spec, int(prepared.spec["height"]),
                                          int(prepared.spec["width"]))


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

    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    if not (Path(pipeline_path) / "unet").is_dir():
        raise ValueError(f"ptq sizes need a UNet; {pipeline_path} has no unet/ folder")
    with init_empty_weights():
        return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(pipeline_path, subfolder="unet"))


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
