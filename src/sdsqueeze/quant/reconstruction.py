"""Learned weight rounding of the UNet: AdaRound per layer, BRECQ per block (as Q-Diffusion uses).

AdaRound (Nagel et al., 2020): each weight becomes ``s * (floor(w/s) + h(V) - z)`` with the
rectified sigmoid ``h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)``, zeta = 1.1,
gamma = -0.1. V starts where h(V) equals w/s's fractional part (the soft weight is w itself) and is
learned with Adam so that the layer's output on calibration inputs matches full precision. After
a warm-up (the first 20% of the iterations, no regularizer) the term
``weight * sum(1 - |2 h(V) - 1|^b)`` pushes every h(V) to 0 or 1, its exponent b annealed linearly
from 20 to 2. The final rounding is hard: ``h = [V >= 0]``.

BRECQ (Li et al., 2021): the same rounding variables, learned jointly for every layer of one block
(diffusers' ``ResnetBlock2D`` and ``BasicTransformerBlock``, Q-Diffusion's block units) against
the block's output; layers outside those blocks are reconstructed alone, as AdaRound does.

Inputs and target outputs are captured from the full-precision UNet on the calibration set
(BRECQ's default), one top-level UNet part at a time so that only that part's activations are
held in memory. Activations are not quantized while the rounding is learned (Q-Diffusion's weight
phase); their ranges are calibrated afterwards on the reconstructed weights.

Why by hand: the reference implementations (BRECQ, Q-Diffusion) are research code bound to their
own quantized-module classes, not installable packages; brevitas and nvidia-modelopt are heavy
dependencies (see ptq.py). What is here is the rounding variable, its regularizer and one Adam loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

ZETA, GAMMA = 1.1, -0.1          # the rectified sigmoid's stretch
B_START, B_END, WARMUP = 20.0, 2.0, 0.2
BLOCK_TYPES = ("ResnetBlock2D", "BasicTransformerBlock")
METHODS = ("adaround", "brecq")


@dataclass(frozen=True)
class ReconstructionSettings:
    iterations: int
    lr: float
    batch_size: int     # UNet rows per Adam step
    weight: float       # of the rounding regularizer
    seed: int = 0       # of the minibatch draws


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


def initial_v(rest: torch.Tensor) -> torch.Tensor:
    """The V at which h(V) equals ``rest`` (in [0, 1)): the soft-rounded weight starts as w."""
    return -torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)


def temperature(step: int, iterations: int) -> float:
    """The regularizer's exponent b: 20 through the warm-up, then linearly down to 2."""
    warm = WARMUP * iterations
    if step < warm:
        return B_START
    progress = (step - warm) / max(iterations - warm, 1)
    return B_END + (B_START - B_END) * max(0.0, 1.0 - progress)


class LearnedRounding(nn.Module):
    """One layer's rounding variables V over its fixed per-element (scale, zero point)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int):
        super().__init__()
        w = weight.detach().float()
        scale, zero_point = scale.to(w.device), zero_point.to(w.device)
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero_point)
        self.register_buffer("floor", torch.floor(w / scale))
        self.v = nn.Parameter(initial_v(w / scale - self.floor))
        self.qmax = 2**bits - 1

    def rounding(self, hard: bool = False) -> torch.Tensor:
        """h(V) in [0, 1]; hard: exactly 0 or 1."""
        return (self.v >= 0).float() if hard else rectified_sigmoid(self.v)

    def weight(self, hard: bool = False) -> torch.Tensor:
        q = torch.clamp(self.floor + self.rounding(hard) + self.zero_point, 0, self.qmax)
        return (q - self.zero_point) * self.scale

    def regularizer(self, b: float) -> torch.Tensor:
        return (1 - (2 * self.rounding() - 1).abs().pow(b)).sum()


# --- capturing full-precision inputs and outputs -------------------------------------------------

class Captured:
    """Every call of one module on the calibration set: positional and keyword inputs, output."""

    def __init__(self):
        self.calls: list[tuple[tuple, dict, torch.Tensor]] = []

    def __call__(self, module, args, kwargs, output):
        keep = lambda x: x.detach().cpu() if torch.is_tensor(x) else x  # noqa: E731
        output = output[0] if isinstance(output, tuple) else output
        self.calls.append((tuple(keep(a) for a in args), {k: keep(v) for k, v in kwargs.items()},
                           keep(output)))

    def stack(self) -> None:
        """Concatenate the calls along the batch dimension (rows), once."""
        rows = sum(call[2].shape[0] for call in self.calls)
        join = lambda values: (torch.cat(values) if torch.is_tensor(values[0])  # noqa: E731
                               and sum(v.shape[0] for v in values) == rows else values[0])
        args, kwargs, outputs = zip(*self.calls)
        self.args = tuple(join([a[i] for a in args]) for i in range(len(args[0])))
        self.kwargs = {k: join([kw[k] for kw in kwargs]) for k in kwargs[0]}
        self.output = torch.cat(outputs)
        self.rows = rows
        self.calls = []

    def select(self, rows: torch.Tensor, device) -> tuple[tuple, dict, torch.Tensor]:
        pick = lambda x: (x[rows].to(device) if torch.is_tensor(x) and x.shape[0] == self.rows  # noqa: E731
                          else x.to(device) if torch.is_tensor(x) else x)
        return (tuple(pick(a) for a in self.args), {k: pick(v) for k, v in self.kwargs.items()},
                pick(self.output))


def text_input(text, device, dtype) -> dict:
    """The UNet's text keyword: none for an unconditional UNet."""
    return {} if text is None else {"encoder_hidden_states": text.to(device, dtype)}


def capture(unet: nn.Module, modules: dict[str, nn.Module], batches: list) -> dict[str, Captured]:
    """Run the (full-precision) UNet over ``batches`` and keep each module's inputs and output."""
    captured = {name: Captured() for name in modules}
    hooks = [m.register_forward_hook(captured[name], with_kwargs=True) for name, m in modules.items()]
    device, dtype = unet.device, unet.dtype
    try:
        with torch.no_grad():  # not inference_mode: the captured tensors later enter autograd
            for sample, timestep, text in batches:
                unet(sample.to(device, dtype), timestep.to(device), **text_input(text, device, dtype))
    finally:
        for hook in hooks:
            hook.remove()
    for record in captured.values():
        record.stack()
    return captured


# --- learning the rounding --------------------------------------------------------------------------

def output_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over channels, averaged over the rest (BRECQ's lp_loss, p = 2)."""
    channels = 1 if output.dim() == 4 else -1
    return (output.float() - target.float()).pow(2).sum(dim=channels).mean()


def learn_rounding(unit: nn.Module, roundings: dict[str, LearnedRounding], data: Captured,
                   settings: ReconstructionSettings) -> dict[str, torch.Tensor]:
    """Adam on the V of ``roundings`` (keys: weight names relative to ``unit``); hard weights out."""
    for parameter in unit.parameters():
        parameter.requires_grad_(False)
    optimizer = torch.optim.Adam([r.v for r in roundings.values()], lr=settings.lr)
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    device = next(unit.parameters()).device
    dtype = next(unit.parameters()).dtype
    for step in range(settings.iterations):
        rows = torch.randint(data.rows, (min(settings.batch_size, data.rows),), generator=generator)
        args, kwargs, target = data.select(rows, device)
        state = {name: r.weight().to(dtype) for name, r in roundings.items()}
        output = functional_call(unit, state, args, kwargs)
        loss = output_error(output[0] if isinstance(output, tuple) else output, target)
        if step >= WARMUP * settings.iterations:
            b = temperature(step, settings.iterations)
            loss = loss + settings.weight * sum(r.regularizer(b) for r in roundings.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: r.weight(hard=True).detach() for name, r in roundings.items()}


def reconstruction_units(unet: nn.Module, layers: list[str], method: str) -> dict[str, list[str]]:
    """Unit name -> the quantized layers learned together: each layer alone (adaround), or the
    layers of each ResnetBlock2D / BasicTransformerBlock together (brecq; others alone)."""
    if method not in METHODS:
        raise ValueError(f"ptq.reconstruction is '{method}'; allowed: none, {', '.join(METHODS)}")
    units: dict[str, list[str]] = {}
    blocks = [name for name, m in unet.named_modules() if type(m).__name__ in BLOCK_TYPES] \
        if method == "brecq" else []
    for layer in layers:
        unit = next((b for b in blocks if layer.startswith(b + ".")), layer)
        units.setdefault(unit, []).append(layer)
    return units


def top_level(name: str) -> str:
    """The UNet part a module belongs to (``down_blocks.1``, ``mid_block``, ``conv_in``...)."""
    head, *rest = name.split(".")
    return f"{head}.{rest[0]}" if rest and rest[0].isdigit() else head


def reconstruct(unet: nn.Module, quantizers: dict[str, tuple], batches: list, method: str,
                settings: ReconstructionSettings) -> dict[str, torch.Tensor]:
    """Layer name -> its learned, hard-rounded weight; ``quantizers``: name -> (bits, scale, zero)."""
    if not batches:
        raise ValueError("ptq.reconstruction needs calibration samples; the calibration set is empty")
    modules = dict(unet.named_modules())
    units = reconstruction_units(unet, list(quantizers), method)
    weights: dict[str, torch.Tensor] = {}
    for part in dict.fromkeys(top_level(u) for u in units):
        part_units = {u: layers for u, layers in units.items() if top_level(u) == part}
        captured = capture(unet, {u: modules[u] for u in part_units}, batches)
        for unit, layers in part_units.items():
            roundings = {relative_weight(unit, layer): LearnedRounding(modules[layer].weight, *quantizers[layer][1:],
                                                                       quantizers[layer][0])
                         for layer in layers}
            learned = learn_rounding(modules[unit], roundings, captured.pop(unit), settings)
            weights.update({layer: learned[relative_weight(unit, layer)] for layer in layers})
    return weights


def relative_weight(unit: str, layer: str) -> str:
    return "weight" if layer == unit else f"{layer[len(unit) + 1:]}.weight"
