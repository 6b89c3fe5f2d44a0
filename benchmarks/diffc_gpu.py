"""DiffC on a GPU: candidate-search throughput (the hot loop) and bit-exact round trips on CUDA.

    python benchmarks/diffc_gpu.py --model resources/models/tiny --out docs/benchmarks/diffc_gpu.json

Measures rcc.select_many for one step shaped like Stable Diffusion 1.5 at 512 px (16384 latent
dims) on every device present, then encodes/decodes an image with the given pipeline on CUDA and
checks the receiver's latent equals the sender's bit for bit and a second decode gives the same pixels
(on the CPU too, in the same process after the CUDA and CPU searches: the process state that once
made the CPU receiver miss). The docs' table from its JSON:

    python benchmarks/diffc_gpu.py --summarize docs/benchmarks/diffc_gpu.json --doc docs/diffc.md
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

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
    """Encode one image at four rate points, then per file: does the receiver reach the sender's
    latent bit for bit (compared directly, and through the digest the decoder checks)?"""
    pipe = load_pipeline(model_path, device=device)
    model = diffc.DiffusionModel(pipe)
    size = images.model_resolution(pipe)
    ramp = np.linspace(0, 255, size)
    image = np.stack([np.add.outer(ramp, ramp) / 2, np.outer(np.sin(ramp / 20), ramp) % 255,
                      np.tile(ramp, (size, 1))[::-1]], axis=2).astype(np.uint8)  # no skimage needed
    settings = diffc.DiffcSettings(step_stride=100, max_chunk_bits=10, margin_bits=3,
                                   denoise_steps=10, block_rows_log2=16, seed=7)
    start = time.perf_counter()
    files, report = diffc.encode_rate_points(image, pipe, [500, 300, 200, 100], settings, model)
    encode_s = time.perf_counter() - start
    out = {"device": device, "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
           "model_fingerprint": diffc.model_fingerprint(pipe).hex(), "image_size": size,
           "encode_seconds_4_rate_points": encode_s, "rate_points": {}}
    for t_r, data in files.items():
        header = diffc.DiffcFile.from_bytes(data)
        with diffc.codec.numeric_regime(header.cpu_threads):
            sender = diffc.codec.ddim_denoise(model, report.latents[t_r], t_r, settings.denoise_steps)
        start = time.perf_counter()
        try:
            latent, error = diffc.decode_latent(data, pipe, model), None
        except diffc.DiffcError as err:  # the digest check refused: record it, do not stop the run
            latent, error = None, str(err)
        decode_s = time.perf_counter() - start
        first, second = (diffc.decode(data, pipe, model), diffc.decode(data, pipe, model)) if error is None \
            else (None, None)
        out["rate_points"][t_r] = {
            "bytes": len(data), "decode_seconds": decode_s, "digest_error": error,
            "receiver_latent_equals_sender": latent is not None and bool(torch.equal(latent, sender)),
            "redecode_identical": first is not None and bool(np.array_equal(first, second)),
            "worst_chunk_excess_bits": max(e for e, t in zip(report.chunk_excess_bits, report.timesteps)
                                           if t >= t_r)}
    return out


def summary_markdown(result: dict) -> str:
    """The docs' block: per device, encode and decode seconds per image and exactness."""
    lines = [f"Measured by `benchmarks/diffc_gpu.py` (torch {result['torch']}, Python {result['python']}; "
             f"the tiny pipeline with seeded weights, fingerprint {result['round_trip'][0]['model_fingerprint']}, "
             f"{result['round_trip'][0]['image_size']} px; 4 rate points t = 500/300/200/100 from one walk, "
             "stride 100, chunks <= 10 bits, margin 3, blocks of 2^16 candidates):", "",
             "| device | encode s / image (4 rate points) | decode s / file (mean) | bytes per file | "
             "receiver latent = sender's | second decode identical |", "| --- | --- | --- | --- | --- | --- |"]
    for trip in result["round_trip"]:
        points = trip["rate_points"].values()
        name = trip["gpu"] or trip["device"]
        lines.append(f"| {name} | {trip['encode_seconds_4_rate_points']:.2f} | "
                     f"{np.mean([p['decode_seconds'] for p in points]):.2f} | "
                     f"{'/'.join(str(p['bytes']) for p in points)} | "
                     f"{sum(p['receiver_latent_equals_sender'] for p in points)} of {len(points)} | "
                     f"{sum(p['redecode_identical'] for p in points)} of {len(points)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a diffusers folder")
    parser.add_argument("--out", help="where the JSON goes")
    parser.add_argument("--summarize", metavar="JSON", help="print (or with --doc write) the docs' block")
    parser.add_argument("--doc", help="markdown file with a diffc-gpu block to fill")
    args = parser.parse_args()
    if args.summarize:
        text = summary_markdown(json.loads(Path(args.summarize).read_text()))
        if args.doc:
            from diffc_coder_compare import write_block

            write_block(Path(args.doc), text, "diffc-gpu")
        else:
            print(text)
        return
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
