"""8-bit UNet layers (fp8 e4m3 or int8) with static scales: no amax pass runs at inference.

Activation scales (one per layer input, per tensor) come from a timestep-aware calibration set built
by the pipeline's own ``quant.calibration.timestep_aware`` (the full-precision model's trajectories
of held-out prompts, every ``cali_st``-th step); weight scales are per output channel. A layer's
input is quantised by ``x * (1 / act_scale)``, clamped and cast (int8: rounded to the nearest
integer first): plain tensor ops, which torch.compile fuses into the kernel that produces ``x``
(LayerNorm, GEGLU, GroupNorm + SiLU). Both formats are symmetric (fp8: +-448, int8: +-127).

- Linears (and 1x1 convolutions, as GEMMs over the channels-last pixels) run ``torch._scaled_mm``
  (fp8, per-tensor scales, bf16 out) or ``torch._int_mm`` (int8, int32 out); the per-channel weight
  scale (for int8 also the activation scale) and the bias are applied to its output in one
  elementwise step that Inductor fuses into the consumer. (For CUDA, recent Inductor no longer
  registers the pattern behind ``force_fuse_int_mm_with_mul`` that folded this multiply into
  ``_int_mm`` (torch 2.14 checked), so the int32 output goes to memory, twice fp8's bf16 bytes.)
- kxk convolutions run the Triton implicit-GEMM kernel of ``fp8conv`` (fp32 accumulation for fp8,
  int32 for int8).
- SmoothQuant (alpha > 0): input channel j of a linear is divided by
  ``s_j = amax(X_j)^alpha / amax(W_j)^(1 - alpha)`` and the weight's column multiplied by it, which
  moves activation outliers into the weights; the division folds into the quantising multiply.

Without CUDA the same arithmetic runs on the CPU (fp8 simulated in fp32, where its values are
exact; int8 GEMMs on ``torch._int_mm``'s CPU kernel, convolutions in fp32), so the variants run,
slowly, on the embedded CPU model and their quality can be measured there.

No library covers this: torchao's float8 and int8 configs scale activations dynamically (an amax
pass per call) and quantise only ``nn.Linear``; its static-scale paths also leave convolutions alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .fp8conv import FP8, FP8_MAX, INT8, INT8_MAX, quantized_conv2d

SCOPES = ("linear", "gemm", "all")  # linears; + 1x1 convs; + kxk convs
# Held-out calibration prompts (never the benchmark's or the evaluation set's prompts).
CALIBRATION_PROMPTS = ("a quiet harbour with fishing boats at dawn", "a portrait of an old man with a grey beard",
                       "a plate of pasta with basil on a white table", "a snowy mountain village at night")
MIN_AMAX = 1e-6


@dataclass(frozen=True)
class QuantFormat:
    """A symmetric 8-bit format: its dtype, largest magnitude, and whether values are integers."""

    name: str
    dtype: torch.dtype
    qmax: float
    integer: bool

    def cast(self, scaled: torch.Tensor) -> torch.Tensor:
        """Saturate to the format's range and cast (integers round to nearest; fp8's cast rounds itself)."""
        scaled = scaled.clamp(-self.qmax, self.qmax)
        return (scaled.round() if self.integer else scaled).to(self.dtype)


FORMATS = {"fp8": QuantFormat("fp8", FP8, FP8_MAX, integer=False),
           "int8": QuantFormat("int8", INT8, INT8_MAX, integer=True)}


def quantize(x: torch.Tensor, inverse_scale: torch.Tensor, fmt: QuantFormat = FORMATS["fp8"]) -> torch.Tensor:
    """x / scale, saturated to the format's range, cast: Inductor fuses this into x's producer."""
    return fmt.cast(x.float() * inverse_scale)


def per_channel_weight(weight2d: torch.Tensor, fmt: QuantFormat = FORMATS["fp8"]) -> tuple[torch.Tensor, torch.Tensor]:
    """(8-bit weight, fp32 scale per output row) of a [out, in] matrix."""
    scale = weight2d.abs().amax(dim=1).clamp(min=MIN_AMAX) / fmt.qmax
    return fmt.cast(weight2d / scale[:, None]), scale


def scaled_mm(x_q: torch.Tensor, weight_q: torch.Tensor, act_scale: torch.Tensor, one: torch.Tensor) -> torch.Tensor:
    """x_q @ weight_q.T * act_scale, fp32-accumulated, bf16 out (simulated in fp32 off CUDA)."""
    if x_q.is_cuda:
        return torch._scaled_mm(x_q, weight_q.t(), scale_a=act_scale, scale_b=one, out_dtype=torch.bfloat16)
    return (x_q.float() @ weight_q.float().t()) * act_scale


def int_mm(x_q: torch.Tensor, weight_q: torch.Tensor, act_scale: torch.Tensor) -> torch.Tensor:
    """x_q @ weight_q.T summed exactly in int32 (cuBLASLt on CUDA, torch's own kernel on the CPU),
    times act_scale in fp32. The weight's transpose is column-major, the layout cuBLASLt's int8 GEMM takes."""
    return torch._int_mm(x_q, weight_q.t()).float() * act_scale


class StaticQuantGemm(nn.Module):
    """A Linear, or a 1x1 convolution over channels-last pixels, as one 8-bit GEMM."""

    def __init__(self, weight2d: torch.Tensor, bias: torch.Tensor | None, act_amax: float,
                 smooth: torch.Tensor | None, conv1x1: bool, fmt: QuantFormat = FORMATS["fp8"]):
        super().__init__()
        weight2d = weight2d.detach().float()
        if smooth is not None:
            weight2d = weight2d * smooth[None, :]
        weight_q, weight_scale = per_channel_weight(weight2d, fmt)
        self.out_features, self.in_features = weight_q.shape
        self.conv1x1, self.fmt = conv1x1, fmt
        act_scale = max(act_amax, MIN_AMAX) / fmt.qmax
        inverse = torch.full((self.in_features,), 1 / act_scale) if smooth is None else 1 / (smooth * act_scale)
        device = weight2d.device
        self.register_buffer("weight_q", weight_q)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("act_scale", torch.tensor(act_scale, device=device))
        self.register_buffer("input_inverse_scale", inverse.to(device))
        self.register_buffer("one", torch.ones((), device=device))
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv1x1:  # [N, C, H, W] (channels_last: the permute is a view) -> pixels x C
            n, _, h, w = x.shape
            rows = x.permute(0, 2, 3, 1).reshape(-1, self.in_features)
        else:
            rows = x.reshape(-1, self.in_features)
        rows_q = quantize(rows, self.input_inverse_scale, self.fmt)
        if self.fmt.integer:
            y = int_mm(rows_q, self.weight_q, self.act_scale)
        else:
            y = scaled_mm(rows_q, self.weight_q, self.act_scale, self.one)
        y = y.float() * self.weight_scale
        if self.bias is not None:
            y = y + self.bias
        y = y.to(x.dtype)
        if self.conv1x1:
            return y.reshape(n, h, w, self.out_features).permute(0, 3, 1, 2)
        return y.reshape(*x.shape[:-1], self.out_features)


class StaticQuantConv(nn.Module):
    """A kxk convolution (groups 1, dilation 1, zero padding) on the 8-bit implicit-GEMM kernel."""

    def __init__(self, conv: nn.Conv2d, act_amax: float, fmt: QuantFormat = FORMATS["fp8"]):
        super().__init__()
        weight = conv.weight.detach().float().permute(0, 2, 3, 1)  # [Cout, k, k, Cin]: K-major rows
        weight_q, weight_scale = per_channel_weight(weight.reshape(weight.shape[0], -1), fmt)
        self.kernel_size, self.stride, self.padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        self.fmt = fmt
        act_scale = max(act_amax, MIN_AMAX) / fmt.qmax
        # 2-D [Cout, k * k * Cin]: a module-wide channels_last conversion would restride a 4-D buffer
        self.register_buffer("weight_q", weight_q.contiguous())
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("act_scale", torch.tensor([act_scale], device=weight.device))
        self.register_buffer("input_inverse_scale", torch.tensor(1 / act_scale, device=weight.device))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_q = quantize(x.permute(0, 2, 3, 1), self.input_inverse_scale, self.fmt)
        y = quantized_conv2d(x_q, self.weight_q, self.weight_scale, self.act_scale, self.bias,
                       self.kernel_size, self.stride, self.padding, x.dtype)
        return y.permute(0, 3, 1, 2)


def gemm_shaped(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return module.in_features % 16 == 0 and module.out_features % 16 == 0
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.stride == (1, 1)
            and module.groups == 1 and module.in_channels % 16 == 0 and module.out_channels % 16 == 0)


def conv_shaped(module: nn.Module) -> bool:
    """kxk convs the kernel takes: square, groups 1, no dilation, zero padding, channels a multiple
    of 16 (conv_in's 4 latent channels and conv_out's 4 outputs stay 16-bit)."""
    return (isinstance(module, nn.Conv2d) and module.kernel_size[0] == module.kernel_size[1] > 1
            and module.groups == 1 and module.dilation == (1, 1) and module.padding_mode == "zeros"
            and module.stride[0] == module.stride[1] and module.padding[0] == module.padding[1]
            and module.in_channels % 16 == 0 and module.out_channels % 16 == 0)


def targets(unet: nn.Module, scope: str, skip: tuple[str, ...]) -> dict[str, nn.Module]:
    """Layers to quantise in ``scope``; ``skip`` names the few-row layers (time embedding)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown static 8-bit scope '{scope}'; one of {SCOPES}")
    chosen = {}
    for name, module in unet.named_modules():
        if any(part in name for part in skip):
            continue
        if isinstance(module, nn.Linear) and gemm_shaped(module):
            chosen[name] = module
        elif scope in ("gemm", "all") and isinstance(module, nn.Conv2d) and gemm_shaped(module):
            chosen[name] = module
        elif scope == "all" and conv_shaped(module):
            chosen[name] = module
    return chosen


class RangeRecorder:
    """Forward pre-hooks: each layer's input amax per tensor and, for linears, per input channel."""

    def __init__(self, layers: dict[str, nn.Module]):
        self.amax: dict[str, float] = {}
        self.channel_amax: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_pre_hook(self._hook(n, m)) for n, m in layers.items()]

    def _hook(self, name: str, module: nn.Module):
        def record(_, args):
            x = args[0].detach()
            self.amax[name] = max(self.amax.get(name, 0.0), float(x.abs().amax()))
            if isinstance(module, nn.Linear):
                per_channel = x.abs().reshape(-1, x.shape[-1]).amax(dim=0).float()
                previous = self.channel_amax.get(name)
                self.channel_amax[name] = per_channel if previous is None else torch.maximum(previous, per_channel)
        return record

    def remove(self):
        for handle in self.handles:
            handle.remove()


def calibration_ranges(pipe, layers: dict[str, nn.Module], generation: dict, cali_n: int, cali_st: int) -> RangeRecorder:
    """Ranges over a timestep-aware calibration set of the pipeline (``quant.calibration``)."""
    from ..quant import calibration
    from ..quant.ptq import calibration_batches, run_unet

    settings = calibration.CalibrationSettings("timestep_aware", cali_n=cali_n, cali_st=cali_st)
    prompts = [CALIBRATION_PROMPTS[i % len(CALIBRATION_PROMPTS)] for i in range(cali_n)]
    tensors = calibration.timestep_aware(pipe, settings, prompts, generation)
    recorder = RangeRecorder(layers)
    try:
        run_unet(pipe.unet, calibration_batches(tensors, cali_n))
    finally:
        recorder.remove()
    return recorder


def smoothing(channel_amax: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant's per-input-channel factors s_j = amax(X_j)^alpha / amax(W_j)^(1 - alpha)."""
    weight_amax = weight.detach().float().abs().amax(dim=0).clamp(min=MIN_AMAX)
    s = channel_amax.to(weight_amax.device).clamp(min=MIN_AMAX).pow(alpha) / weight_amax.pow(1 - alpha)
    return s.clamp(min=1e-4, max=1e4)


def outlier_ratio(channel_amax: torch.Tensor) -> float:
    """Largest input channel's amax over the median channel's: >> 1 where outlier channels exist."""
    return float(channel_amax.max() / channel_amax.median().clamp(min=MIN_AMAX))


def replace(unet: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(unet.get_submodule(parent_name) if parent_name else unet, child, new)


def quantize_unet(pipe, scope: str, generation: dict, skip: tuple[str, ...], smoothquant: float = 0.0,
                  cali_n: int = 4, cali_st: int = 5, fmt: str = "fp8") -> dict:
    """Calibrate, then swap the chosen layers for their static 8-bit (``fmt``: fp8 or int8)
    versions; returns the notes."""
    quant_format = FORMATS[fmt]
    unet = pipe.unet
    layers = targets(unet, scope, skip)
    ranges = calibration_ranges(pipe, layers, generation, cali_n, cali_st)
    outliers = {}
    for name, module in layers.items():
        amax = ranges.amax.get(name)
        if amax is None:  # never called on the calibration set: leave it alone
            continue
        if isinstance(module, nn.Linear):
            channel_amax = ranges.channel_amax[name]
            outliers[name] = outlier_ratio(channel_amax)
            smooth = smoothing(channel_amax, module.weight, smoothquant) if smoothquant > 0 else None
            if smooth is not None:
                amax = float((channel_amax.to(smooth.device) / smooth).max())
            new = StaticQuantGemm(module.weight, module.bias, amax, smooth, conv1x1=False, fmt=quant_format)
        elif module.kernel_size == (1, 1):
            new = StaticQuantGemm(module.weight.flatten(1), module.bias, amax, None, conv1x1=True, fmt=quant_format)
        else:
            new = StaticQuantConv(module, amax, quant_format)
        replace(unet, name, new)
    kinds = [type(m).__name__ + ("1x1" if getattr(m, "conv1x1", False) else "") for m in unet.modules()]
    ratios = sorted(outliers.values())
    return {"format": fmt, "scope": scope, "smoothquant_alpha": smoothquant,
            "calibration": f"timestep_aware n{cali_n} st{cali_st}",
            f"linears_{fmt}": kinds.count("StaticQuantGemm"), f"conv1x1_{fmt}": kinds.count("StaticQuantGemm1x1"),
            f"conv_{fmt}": kinds.count("StaticQuantConv"),
            "linear_input_outlier_ratio": {"median": ratios[len(ratios) // 2] if ratios else None,
                                           "max": ratios[-1] if ratios else None,
                                           "layers_over_20": sum(r > 20 for r in ratios)}}
