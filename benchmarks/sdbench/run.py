"""Variant groups and the command line of the acceleration benchmark (benchmarks/gpu_benchmark.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _load_groups(groups_file: Path = REPO / "benchmarks" / "groups.yaml",
                 builds_file: Path = REPO / "config" / "accel.yaml") -> tuple[dict, dict, dict, frozenset]:
    """(defaults, groups, sweeps, profiled) from benchmarks/groups.yaml, every name resolved to its
    build in config/accel.yaml; a name missing there stops here, naming the file to fix."""
    listed = yaml.safe_load(groups_file.read_text())
    builds = yaml.safe_load(builds_file.read_text())
    variants = builds["variants"]

    def build(name: str) -> dict:
        if name not in variants:
            raise KeyError(f"{groups_file.name} names '{name}', which is not a variant of {builds_file}")
        return dict(variants[name] or {})

    groups = {group: {name: build(name) for name in names} for group, names in listed["groups"].items()}
    sweeps = {group: (entry["build"], build(entry["build"]),
                      [(scheduler, steps) for scheduler in entry["schedulers"] for steps in entry["steps"]])
              for group, entry in listed.get("sweeps", {}).items()}
    profiled = frozenset((name, int(batch)) for name, batch in listed.get("profiled", []))
    return builds["generation"], groups, sweeps, profiled


# DEFAULTS: config/accel.yaml's generation keys (size, steps and batch come from the command line);
# GROUPS: group -> {variant: its keys}; SWEEPS: name -> (build, its keys, schedules)
DEFAULTS, GROUPS, SWEEPS, PROFILED = _load_groups()


def parse(argv=None):
    parser = argparse.ArgumentParser(description="GPU benchmark of the acceleration variants")
    parser.add_argument("--shape", choices=("sd15", "tiny"), default="sd15")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--groups", nargs="+", default=["eager"], choices=sorted([*GROUPS, *SWEEPS]),
                        help="variant groups, and 'steps' (scheduler x steps on one build)")
    parser.add_argument("--extra", nargs="*", default=[], help="group:variant run first (e.g. eager:fp16-flash)")
    parser.add_argument("--variants", nargs="*", default=None, help="only these variant names")
    parser.add_argument("--tokenizer", default=None, help="CLIP tokenizer folder (written when absent)")
    parser.add_argument("--time-budget", type=float, default=0, help="seconds; later variants are skipped")
    parser.add_argument("--no-flops", action="store_true")
    parser.add_argument("--machine", default=None,
                        help="label of the lent machine, kept in meta.json (default: the GPU's name)")
    parser.add_argument("--quality-reference", default=None,
                        help="variant whose images and latents the later variants are compared with (PSNR, SSIM)")
    parser.add_argument("--conv-rates", action="store_true",
                        help="first time SD 1.5's 3x3 conv shapes: cuDNN fp16 vs the fp8/fp16 Triton kernel")
    parser.add_argument("--kernel-rates", action="store_true",
                        help="first time the HBM copy and exp2 rates, SDPA and GroupNorm+SiLU at the UNet's shapes")
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


@dataclass(frozen=True)
class BenchRun:
    """One benchmark run's settings, fixed once the command line is read; ``profiles`` collects
    the profiler tables as variants finish."""

    shape: str
    device: str
    size: int
    steps: int
    batches: tuple[int, ...]
    warmup: int
    repeats: int
    seed: int
    groups: tuple[str, ...]
    extra: tuple[str, ...]
    variants: tuple[str, ...] | None
    tokenizer: str
    out: Path
    deadline: float = 0  # epoch seconds after which later variants are skipped; 0: no budget
    no_flops: bool = False
    machine: str | None = None
    quality_reference: str | None = None
    conv_rates: bool = False
    kernel_rates: bool = False
    profile: frozenset = frozenset()
    profiles: list[str] = field(default_factory=list)
    reference_outputs: dict = field(default_factory=dict)  # batch -> the reference variant's outputs

    @classmethod
    def from_argv(cls, argv=None, started: float | None = None) -> BenchRun:
        options = vars(parse(argv))
        budget = options.pop("time_budget")
        out = Path(options.pop("out"))
        tokenizer = options.pop("tokenizer") or str(out / "tokenizer")
        started = time.time() if started is None else started
        lists = {k: tuple(options.pop(k)) for k in ("batches", "groups", "extra")}
        variants = options.pop("variants")
        return cls(**options, **lists, variants=tuple(variants) if variants is not None else None,
                   tokenizer=tokenizer, out=out, deadline=started + budget if budget else 0,
                   profile=frozenset(PROFILED))


def planned(args) -> list[tuple[str, object]]:
    """(name, run) in run order: --extra first, then each group's variants (a sweep is one entry)."""
    from . import harness

    def variant(name, overrides):
        return name, lambda a, log, on_row: harness.run_variant(name, overrides, a, log, on_row=on_row)

    def sweep(group):
        name, overrides, schedules = SWEEPS[group]
        return (f"{name} x {group}",
                lambda a, log, on_row: harness.run_scheduler_sweep(name, overrides, schedules, a, log, on_row))

    todo = [variant(e.split(":")[1], GROUPS[e.split(":")[0]][e.split(":")[1]]) for e in args.extra]
    for group in args.groups:
        if group in SWEEPS:
            todo.append(sweep(group))
        else:
            named = {name for name, _ in todo}  # a variant run first through --extra is not run again
            todo += [variant(n, o) for n, o in GROUPS[group].items()
                     if n not in named and (not args.variants or n in args.variants)]
    return todo


def main(argv=None) -> int:
    import pandas as pd
    import torch
    from diffusers.utils import logging as diffusers_logging

    from sdsqueeze.accel.measure import count_flops, matmul_tflops
    from sdsqueeze.models import resolve_dtype, write_clip_tokenizer

    from . import harness

    diffusers_logging.set_verbosity_error()

    started = time.time()
    args = BenchRun.from_argv(argv, started)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "log.txt", "a")

    def log(message: str) -> None:
        print(message, flush=True)
        log_file.write(message + "\n")
        log_file.flush()

    if not (Path(args.tokenizer) / "vocab.json").is_file():
        write_clip_tokenizer(Path(args.tokenizer))
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    meta = {"note": harness.ARCHITECTURE_NOTE, "shape": args.shape, "command": "python benchmarks/gpu_benchmark.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "size": args.size, "steps": args.steps, "batches": list(args.batches),
            "warmup": args.warmup, "repeats": args.repeats, "versions": harness.versions(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))}
    meta["machine"] = args.machine or meta["versions"].get("gpu", args.device)
    if args.quality_reference:
        meta["quality_reference"] = args.quality_reference
    meta["bf16_matmul_tflops"] = matmul_tflops(args.device)
    log(f"device {meta['versions'].get('gpu', args.device)}; bf16 matmul {meta['bf16_matmul_tflops']:.0f} TFLOP/s")
    if args.conv_rates or any(group.startswith("lowbit") or group == "groupnorm" for group in args.groups):
        meta["fp8_matmul_tflops"] = matmul_tflops(args.device, precision="fp8")
        log(f"fp8 matmul {meta['fp8_matmul_tflops']:.0f} TFLOP/s")
        meta["int8_matmul_tops"] = matmul_tflops(args.device, precision="int8")
        log(f"int8 matmul {meta['int8_matmul_tops']:.0f} TOPS")
    if args.conv_rates:
        from .convbench import conv_rates

        conv_rates(args.device, log).to_csv(out / "conv_rates.csv", index=False)
    if args.kernel_rates:
        from .kernelbench import kernel_rates

        table, limits = kernel_rates(args.device, meta["bf16_matmul_tflops"], log)
        table.to_csv(out / "kernel_rates.csv", index=False)
        meta.update(limits)
    if not args.no_flops:
        pipe = harness.build_pipeline(args.shape, args.tokenizer, args.device,
                                    resolve_dtype("float16" if args.device != "cpu" else "float32"))
        meta["flops"] = [count_flops(pipe, b, args.size) for b in args.batches]
        del pipe
        log(f"flops: {json.dumps(meta['flops'])}")
    def write_meta() -> None:
        (out / "meta.json").write_text(json.dumps(meta, indent=1, default=str))

    write_meta()  # now, not only at the end: a run killed at its time limit keeps its matmul rate and FLOPs
    rows, unfinished = [], []  # unfinished: rows of the variant still running

    def save_partial(row) -> None:
        unfinished.append(row)
        pd.DataFrame(rows + unfinished).to_csv(out / "results.csv", index=False)

    for name, run in planned(args):
        if args.deadline and time.time() > args.deadline:
            rows += [{"variant": name, "batch": b, "status": "skipped: time budget"} for b in args.batches]
        else:
            unfinished.clear()
            rows += run(args, log, save_partial)
        pd.DataFrame(rows).to_csv(out / "results.csv", index=False)  # skipped entries too
        # after every entry: a run that loses its machine mid-way keeps the profiles taken so far
        (out / "profiles.txt").write_text("\n".join(args.profiles))
    meta["elapsed_s"] = time.time() - started
    write_meta()
    table = pd.DataFrame(rows)
    shown = [c for c in ("variant", "batch", "status", "s_per_image", "unet_ms_step_median",
                         "peak_memory_mb", "unet_bytes_memory") if c in table]
    log(table[shown].to_string(index=False))
    return 0
