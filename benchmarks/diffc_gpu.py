"""DiffC on a GPU: candidate-search throughput (the hot loop) and bit-exact round trips on CUDA.

    python benchmarks/diffc_gpu.py --model resources/models/tiny --out docs/benchmarks/diffc_gpu.json

Measures rcc.select_many for one step shaped like Stable Diffusion 1.5 at 512 px (16384 latent
dims) on every device present, then encodes/decodes an image with the given pipeline on CUDA and
checks the receiver's latent equals the sender's bit for bit and a second decode gives the same pixels
(on the CPU too, for comparison).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from sdsqueeze import diffc
from sdsqueeze.diffc import images, rcc
from sdsqueeze.models import load_pipeline


def search_throughput(device: str, dim: int, n_chunks: int, chunk_bits: float, margin: int,
                      rows_log2: int, repeats: int = 3) -> dict:
    plan = rcc.ChunkPlan.for_budget(chunk_bits, margin)
    parts = torch.tensor_split(torch.randperm(dim, generator=torch.Generator().manual_seed(0)), n_chunks)
    shift = torch.randn(dim, generator=torch.Generator().manual_seed(1)) * 0.05
    mus = [shift[p].to(device) for p in parts]
    seeds = [rcc.derive_seed("bench", j) for j in range(n_chunks)]
    rcc.select_many(mus, seeds, plan.n_candidates, 2 ** rows_log2)  # warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        rcc.select_many(mus, seeds, plan.n_candidates, 2 ** rows_log2)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {"device": device, "dims": dim, "chunks": n_chunks, "chunk_kl_bits": chunk_bits,
            "candidates_per_chunk": plan.n_candidates, "block_rows": 2 ** rows_log2,
            "seconds_per_step": seconds,
            "candidate_dims_per_second": plan.n_candidates * dim / seconds}


def round_trip(model_path: str, device: str) -> dict:
    pipe = load_pipeline(model_path, device=device)
    model = diffc.DiffusionModel(pipe)
    size = images.model_resolution(pipe)
    ramp = np.linspace(0, 255, size)
    image = np.stack([np.add.outer(ramp, ramp) / 2, np.outer(np.sin(ramp / 20), ramp) % 255,
                      np.tile(ramp, (size, 1))[::-1]], axis=2).astype(np.uint8)  # no skimage needed
    settings = diffc.DiffcSettings(step_stride=100, max_chunk_bits=12, margin_bits=3,
                                   denoise_steps=10, block_rows_log2=16, seed=7)
    start = time.perf_counter()
    files, report = diffc.encode_rate_points(image, pipe, [500, 300, 200, 100], settings, model)
    encode_s = time.perf_counter() - start
    out = {"device": device, "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
           "encode_seconds_4_rate_points": encode_s, "rate_points": {}}
    for t_r, data in files.items():
        start = time.perf_counter()
        latent = diffc.decode_latent(data, pipe, model)
        decode_s = time.perf_counter() - start
        sender = diffc.codec.ddim_denoise(model, report.latents[t_r], t_r, settings.denoise_steps)
        first, second = diffc.decode(data, pipe, model), diffc.decode(data, pipe, model)
        out["rate_points"][t_r] = {"bytes": len(data), "decode_seconds": decode_s,
                                   "receiver_latent_equals_sender": bool(torch.equal(latent, sender)),
                                   "redecode_identical": bool(np.array_equal(first, second))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a diffusers folder")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result = {"torch": torch.__version__, "python": platform.python_version(), "search": [], "round_trip": []}
    for device in devices:
        configs = [(16384, 40, 12.0, 3, 12)] + ([(16384, 40, 12.0, 3, 16), (16384, 200, 16.0, 3, 16)]
                                               if device == "cuda" else [])
        for dim, n_chunks, bits, margin, rows_log2 in configs:
            result["search"].append(search_throughput(device, dim, n_chunks, bits, margin, rows_log2,
                                                      repeats=1 if device == "cpu" else 5))
            print(result["search"][-1], flush=True)
    for device in devices:
        result["round_trip"].append(round_trip(args.model, device))
        print(result["round_trip"][-1], flush=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
