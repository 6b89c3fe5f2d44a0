"""The non-matrix kernel classes of an SD 1.5 UNet call against their own hardware limits.

- **Memory**: a device-to-device copy of 1 GiB gives the HBM rate that GroupNorm, residual adds and
  the 8-bit casts are bound by.
- **Exponentials**: a Triton kernel of independent ``exp2`` chains gives the special-function unit's
  rate. Attention computes one exponential per score; with SD 1.5's head dims (40, 80, 160) it has
  few multiply-adds per exponential, so that unit, not the tensor cores, may set its floor.
- **Attention**: SDPA (the builds' backend choice) at the UNet's self- and cross-attention shapes;
  its rate as matmul FLOPs against the bf16 peak and as exponentials against the measured exp rate;
  at the self-attention shapes, each SDPA backend pinned and FlexAttention (compiled Triton).
  An fp8 SDPA call is tried too: the error says whether torch offers one.
- **GEGLU** at the UNet's feed-forward shapes: diffusers' module compiled (cuBLAS GEMM, then
  Inductor's gelu x value kernel) against ``accel/geglu.py``'s one GEMM with the gate in its epilogue,
  both replayed from a CUDA graph; the error of each against a float32 product; the cuBLAS GEMM
  alone, the floor of a gate fused into it.
- **GroupNorm + SiLU** at every GroupNorm shape of the UNet: Inductor's lowering of ``nn.GroupNorm``
  against ``accel/groupnorm.py``'s, both compiled and replayed from a CUDA graph (as the builds run),
  as bytes in + out per second against the copy rate.

Batch 8 = batch 4 with classifier-free guidance, 512 px (latent 64x64), fp16, channels_last.
"""

from __future__ import annotations

import functools
from collections import Counter

import pandas as pd
import torch
import torch.nn.functional as F

from sdsqueeze.accel.groupnorm import ChannelsLastGroupNorm
from sdsqueeze.accel.measure import kernel_seconds

BATCH = 8
EXP_ITERATIONS = 2048


@functools.cache
def unet_norm_and_attention_shapes(image_size: int = 512):
    """One SD 1.5 UNet call on the meta device: Counter of GroupNorm (C, H, W, groups) and of
    attention (heads, query length, key length, head dim) per call."""
    from sdsqueeze.models import SD15_ARCHITECTURE, build_sd_components

    with torch.device("meta"):
        unet = build_sd_components(SD15_ARCHITECTURE, image_size)[0]
    norms, attentions = Counter(), Counter()

    def record_norm(norm, args, _out):
        _, channels, height, width = args[0].shape
        norms[(channels, height, width, norm.num_groups)] += 1

    def record_attention(attn, args, kwargs, _out):
        hidden = args[0]
        context = kwargs.get("encoder_hidden_states")
        keys = hidden.shape[1] if context is None else context.shape[1]
        attentions[(attn.heads, hidden.shape[1], keys, attn.inner_dim // attn.heads)] += 1

    for module in unet.modules():
        if isinstance(module, torch.nn.GroupNorm):
            module.register_forward_hook(record_norm)
        if type(module).__name__ == "Attention":
            module.register_forward_hook(record_attention, with_kwargs=True)
    latent = image_size // 8
    with torch.no_grad():
        unet(torch.empty(1, 4, latent, latent, device="meta"), torch.tensor(1, device="meta"),
             encoder_hidden_states=torch.empty(1, 77, SD15_ARCHITECTURE.text_hidden, device="meta"))
    return norms, attentions


def copy_bandwidth(device: str) -> float:
    """GB/s of a 1 GiB device-to-device copy, bytes read + written."""
    source = torch.empty(2**29, dtype=torch.float16, device=device)
    target = torch.empty_like(source)
    seconds = kernel_seconds(lambda: target.copy_(source))
    return 2 * source.numel() * 2 / seconds / 1e9


def exp_chain_launch(device: str) -> tuple[int, int]:
    """(programs, values per program) of the exp2 chains: 64 programs per SM keep every unit busy."""
    return torch.cuda.get_device_properties(device).multi_processor_count * 64, 2048


def exp_rate(device: str) -> float:
    """Exponentials per second (tera) of the special-function unit: independent ``exp2`` chains,
    one per value a thread holds, each step feeding the next (exp2(-x) stays in [0.5, 1])."""
    programs, block = exp_chain_launch(device)
    out = torch.empty(programs * block, device=device)
    seconds = kernel_seconds(lambda: exp_chains(out, programs, block))
    return out.numel() * EXP_ITERATIONS / seconds / 1e12


def exp_chains(out: torch.Tensor, programs: int, block: int, iterations: int = EXP_ITERATIONS) -> torch.Tensor:
    _exp_chains_kernel[(programs,)](out, ITERATIONS=iterations, BLOCK=block)
    return out


try:
    import triton
    import triton.language as tl

    @triton.jit
    def _exp_chains_kernel(out_ptr, ITERATIONS: tl.constexpr, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        value = offsets.to(tl.float32) * 1e-7
        for _ in range(ITERATIONS):
            value = tl.exp2(-value)
        tl.store(out_ptr + offsets, value)
except ImportError:  # a CPU-only torch without triton: the GPU benchmark is not run there
    _exp_chains_kernel = None


def attention_rates(device: str, bf16_tflops: float, exp_tera: float, log) -> pd.DataFrame:
    _, attentions = unet_norm_and_attention_shapes()
    rows = []
    for (heads, queries, keys, head_dim), per_call in sorted(attentions.items(), reverse=True):
        q = torch.randn(BATCH, heads, queries, head_dim, device=device, dtype=torch.float16)
        k = torch.randn(BATCH, heads, keys, head_dim, device=device, dtype=torch.float16)
        v = torch.randn_like(k)
        with torch.inference_mode():
            seconds = kernel_seconds(functools.partial(F.scaled_dot_product_attention, q, k, v))
        scores = BATCH * heads * queries * keys
        row = {"heads": heads, "queries": queries, "keys": keys, "head_dim": head_dim, "per_unet_call": per_call,
               "us": seconds * 1e6, "tflops": 4 * scores * head_dim / seconds / 1e12,
               "share_of_bf16_peak": 4 * scores * head_dim / seconds / 1e12 / bf16_tflops,
               "share_of_exp_rate": scores / seconds / 1e12 / exp_tera,
               "fp8_sdpa": _fp8_sdpa(q, k, v, seconds),
               **(_backend_us(q, k, v) if queries == keys else {})}  # self-attention: where the time is
        rows.append(row)
        log_row(log, "attention", row)
    return pd.DataFrame(rows)


SDPA_BACKENDS = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION")


def _backend_us(q, k, v) -> dict:
    """Microseconds of each SDPA backend pinned, and of FlexAttention compiled (Triton), at one shape:
    whether a faster attention kernel is on offer. A backend that cannot run the shape gets NaN."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import flex_attention

    out = {}
    with torch.inference_mode():
        for backend in SDPA_BACKENDS:
            try:
                with sdpa_kernel([getattr(SDPBackend, backend)]):
                    out[f"{backend.split('_')[0].lower()}_us"] = kernel_seconds(
                        functools.partial(F.scaled_dot_product_attention, q, k, v)) * 1e6
            except RuntimeError:  # "No available kernel": this backend does not take the shape
                out[f"{backend.split('_')[0].lower()}_us"] = float("nan")
        torch._dynamo.reset()  # one compile per shape, never a recompile limit
        flex = torch.compile(flex_attention, dynamic=False)
        out["flex_us"] = kernel_seconds(functools.partial(flex, q, k, v)) * 1e6
    return out


def _fp8_sdpa(q, k, v, fp16_seconds: float) -> str:
    try:
        q8, k8, v8 = (t.to(torch.float8_e4m3fn) for t in (q, k, v))
        with torch.inference_mode():
            seconds = kernel_seconds(lambda: F.scaled_dot_product_attention(q8, k8, v8))
        return f"ran: {fp16_seconds / seconds:.2f}x fp16"
    except Exception as err:  # noqa: BLE001 -- the answer is whether it runs
        return f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"


def groupnorm_rates(device: str, copy_gbs: float, log) -> pd.DataFrame:
    norms, _ = unet_norm_and_attention_shapes()
    rows = []
    for (channels, height, width, groups), per_call in sorted(norms.items(), key=lambda item: -item[0][0] * item[0][1] ** 2):
        stock = torch.nn.GroupNorm(groups, channels).to(device, torch.float16)
        ours = torch.nn.GroupNorm(groups, channels).to(device, torch.float16)
        ours.__class__ = ChannelsLastGroupNorm
        x = torch.randn(BATCH, channels, height, width, device=device, dtype=torch.float16)
        x = x.to(memory_format=torch.channels_last)
        moved = 2 * x.numel() * x.element_size()  # bytes in + out; the statistics pass reads x again
        row = {"channels": channels, "hw": height, "groups": groups, "per_unet_call": per_call,
               "mbytes_in": x.numel() * 2 / 1e6, "copy_us": graph_seconds(torch.clone, x) * 1e6}
        with torch.inference_mode():
            for name, norm in (("inductor", stock), ("channels_last", ours)):
                torch._dynamo.reset()  # one compile per shape and build, never a recompile limit
                compiled = torch.compile(functools.partial(_norm_silu, norm), dynamic=False)
                seconds = graph_seconds(compiled, x)
                row[f"{name}_us"] = seconds * 1e6
                row[f"{name}_share_of_copy_rate"] = moved / seconds / 1e9 / copy_gbs
            row["max_abs_diff"] = float((compiled(x).float() - F.silu(stock(x)).float()).abs().max())
        rows.append(row)
        log_row(log, "groupnorm", row)
    return pd.DataFrame(rows)


def geglu_rates(device: str, bf16_tflops: float, log) -> pd.DataFrame:
    from diffusers.models.activations import GEGLU

    from sdsqueeze.accel.geglu import use_fused_geglu

    rows = []
    # SD 1.5's transformer shapes: tokens (latent pixels) and width, per UNet call (2 down + 3 up
    # blocks per level, one in the middle block)
    for tokens, width, per_call in ((4096, 320, 5), (1024, 640, 5), (256, 1280, 5), (64, 1280, 1)):
        torch.manual_seed(0)
        stock = GEGLU(width, 4 * width).to(device, torch.float16)
        fused = GEGLU(width, 4 * width).to(device, torch.float16)
        fused.load_state_dict(stock.state_dict())
        use_fused_geglu(fused)
        x = torch.randn(BATCH, tokens, width, device=device, dtype=torch.float16)
        with torch.inference_mode():
            value, gate = F.linear(x.float(), stock.proj.weight.float(), stock.proj.bias.float()).chunk(2, dim=-1)
            exact = value * F.gelu(gate)
            flops = 2 * BATCH * tokens * width * 8 * width
            row = {"tokens": tokens, "width": width, "per_unet_call": per_call}
            # the projection's GEMM alone (cuBLAS, both halves written): the stock module with its
            # gate kernel free, the time a fused epilogue could at best reach
            row["gemm_us"] = graph_seconds(functools.partial(F.linear, weight=stock.proj.weight,
                                                             bias=stock.proj.bias), x) * 1e6
            for name, module in (("stock", stock), ("fused", fused)):
                torch._dynamo.reset()
                compiled = torch.compile(module, dynamic=False)
                seconds = graph_seconds(compiled, x)
                row[f"{name}_us"] = seconds * 1e6
                row[f"{name}_tflops"] = flops / seconds / 1e12
                row[f"{name}_max_abs_err"] = float((compiled(x).float() - exact).abs().max())
            row["fused_share_of_bf16_peak"] = row["fused_tflops"] / bf16_tflops
        rows.append(row)
        log_row(log, "geglu", row)
    return pd.DataFrame(rows)


def log_row(log, kind: str, row: dict) -> None:
    """One console line per measured shape, ``kind key value, key value, ...``: the form
    ``sdbench.fromlog`` rebuilds kernel_rates.csv from when a call's files do not come back."""
    log(f"{kind} " + ", ".join(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
                               for key, value in row.items()))


def _norm_silu(norm, x):
    return F.silu(norm(x))


def graph_seconds(call, x, calls: int = 20, replays: int = 10) -> float:
    """Seconds per ``call(x)`` replayed from one CUDA graph, as the compiled builds run it: kernel
    time without the host's launch cost, which at these sizes would be most of a timed call."""
    for _ in range(3):
        call(x)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            call(x)
    return kernel_seconds(lambda: [graph.replay() for _ in range(replays)]) / (calls * replays)


def kernel_rates(device: str, bf16_tflops: float, log) -> tuple[pd.DataFrame, dict]:
    """Rates of attention and GroupNorm at the UNet's shapes; the copy and exp rates they are held to."""
    copy_gbs = copy_bandwidth(device)
    exp_tera = exp_rate(device)
    log(f"copy {copy_gbs:.0f} GB/s, exp2 {exp_tera:.2f} T/s")
    attention = attention_rates(device, bf16_tflops, exp_tera, log).assign(kind="attention")
    parts = [attention, groupnorm_rates(device, copy_gbs, log).assign(kind="groupnorm")]
    try:
        parts.append(geglu_rates(device, bf16_tflops, log).assign(kind="geglu"))
    except Exception as err:  # noqa: BLE001 -- a kernel that fails here is reported, the run goes on
        log(f"geglu: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    return pd.concat(parts, ignore_index=True), {"copy_gbs": copy_gbs, "exp2_tera_per_s": exp_tera}
