"""How well the embedded model follows its prompts, over a grid of guidance scales and step counts:
the measurement behind the default run's ``generation.guidance`` and ``generation.steps``.

Every caption of the evaluation split (data/shapes_captions.json, one phrasing per image, chosen by
the prompt stage's own seeded selection) is generated with its own seed through the pipeline's
ordinary ``__call__`` and checked by the shapes detector (sdsqueeze.shapes.detect.adherence).

    python -m sdsqueeze.tinyeval grid --out data/models/tiny/grid.csv
    python -m sdsqueeze.tinyeval table data/models/tiny/grid.csv    # the docs' generated tables
    python -m sdsqueeze.tinyeval training data/models/tiny           # (docs/embedded-model.md)
    python -m sdsqueeze.tinyeval render --out a.npz                  # reference images on this machine,
    python -m sdsqueeze.tinyeval compare a.npz b.npz                 # ... and another machine's beside them
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

CAPTIONS = Path(__file__).resolve().parents[2] / "data" / "shapes_captions.json"
GRID_GUIDANCE = (1.0, 3.0, 5.0, 7.5, 10.0)
GRID_STEPS = (10, 25)
GRID_PROMPTS = 64
GRID_SEED = 42  # config.yaml's seed: the grid's prompts are the default run's selection procedure


def evaluation_prompts(n: int = GRID_PROMPTS, seed: int = GRID_SEED, captions: Path = CAPTIONS) -> pd.DataFrame:
    """``n`` prompts with their seeds, selected as the prompt stage selects them."""
    from .prompts import load_coco_captions, select_prompts

    return select_prompts(load_coco_captions(captions), n, seed)


def generate(pipe, prompts: list[str], seeds: list[int], guidance: float, steps: int,
             batch_size: int = 16) -> np.ndarray:
    """uint8 images from each seed's CPU-drawn initial latents (sdsqueeze.seeding, as the generate
    stage draws them)."""
    from .seeding import initial_latents, latent_shape

    size = int(pipe.unet.config.sample_size) * pipe.vae_scale_factor
    images = []
    for start in range(0, len(prompts), batch_size):
        part = slice(start, start + batch_size)
        latents = initial_latents(seeds[part], latent_shape(pipe, size, size)).to(pipe.device)
        out = pipe(prompts[part], num_inference_steps=steps, guidance_scale=guidance, latents=latents,
                   height=size, width=size, output_type="np").images
        images.append((np.clip(out, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(images)


def adherence_table(images: np.ndarray, prompts: list[str]) -> pd.DataFrame:
    from .shapes.detect import adherence

    return pd.DataFrame([adherence(image, prompt) for image, prompt in zip(images, prompts)])


def grid(pipe, selection: pd.DataFrame, guidances=GRID_GUIDANCE, steps_list=GRID_STEPS) -> pd.DataFrame:
    """Mean adherence per attribute and overall, for each (guidance, steps)."""
    prompts, seeds = selection["prompt"].tolist(), selection["seed"].tolist()
    rows = []
    for steps in steps_list:
        for guidance in guidances:
            table = adherence_table(generate(pipe, prompts, seeds, guidance, steps), prompts)
            rows.append({"guidance": guidance, "steps": steps, "prompts": len(prompts),
                         **{k: float(table[k].mean()) for k in table.columns}})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """The grid as the docs show it: percent correct per attribute and overall."""
    columns = [c for c in ("overall", "shape", "colour", "position", "count") if c in table.columns]
    lines = ["| guidance | steps | " + " | ".join(columns) + " |", "|---:|---:|" + "---:|" * len(columns)]
    for row in table.itertuples(index=False):
        values = " | ".join(f"{100 * getattr(row, c):.0f}%" for c in columns)
        lines.append(f"| {row.guidance:g} | {row.steps} | {values} |")
    return "\n".join(lines)


def training_stages(record: dict) -> list[dict]:
    """The records of every stage behind a weights folder, first stage first: a stage started from
    earlier weights keeps their record (``init_from``, or ``previous`` for a debiasing)."""
    stages = []
    while record:
        stages.append(record)
        record = record.get("init_from") or record.get("previous")
    return stages[::-1]


def training_markdown(weights_dir: Path) -> str:
    """What the committed training record says, stage by stage: command, device, data, steps, time,
    loss curves."""
    import json

    from .tinyweights import TRAINING_RECORD

    record = json.loads((Path(weights_dir) / TRAINING_RECORD).read_text())
    lines = [f"Weights sha256 `{record['weights_sha256']}`, VAE scaling factor {record['vae_scaling_factor']:.4f}.", ""]
    for number, stage in enumerate(training_stages(record), 1):
        settings = stage["settings"]
        lines.append(f"{number}. `{stage['command']}`")
        lines.append(f"   - device: {stage['device']} (torch {stage['torch']})")
        if "debiased" in stage:
            lines.append(f"   - the UNet's and text encoder's EMA debiased (decay {stage['debiased']['decay']}, "
                         f"{stage['debiased']['updates']} updates; `tinytrain.debias_ema`)")
            continue
        start = "the previous stage's weights" if "init_from" in stage else f"seeded weights (seed {settings['seed']})"
        lines.append(f"   - from {start}; data: {settings['images']} renders of the shapes domain, split seed "
                     f"{settings['data_seed']}, {settings['image_size']} px; VAE batches "
                     f"{settings['vae_photo_fraction']:.0%} scikit-image photograph crops")
        for phase, batch in (("vae", "vae_batch"), ("unet", "unet_batch")):
            curve = stage[phase]["loss_curve_per_50_steps"]
            if not stage[phase]["steps"]:
                lines.append(f"   - {'VAE' if phase == 'vae' else 'UNet and text encoder'}: kept as they were")
                continue
            if not curve:  # fewer than 50 steps
                lines.append(f"   - {phase}: {stage[phase]['steps']} steps of batch {settings[batch]}")
                continue
            what = {"vae": "VAE decoder" if stage[phase].get("decoder_only") else "VAE",
                    "unet": "UNet + text encoder"}[phase]
            marks = [curve[min(len(curve) - 1, round(k * (len(curve) - 1) / 10))] for k in range(11)]
            lines.append(f"   - {what}: {stage[phase]['steps']} steps of batch {settings[batch]} in "
                         f"{stage[phase]['seconds']} s; loss (mean of 50 steps) at every tenth: "
                         + ", ".join(f"{v:.4f}" for v in marks))
    return "\n".join(lines)


RENDER_SETTINGS = ((3.0, 25), (7.5, 25), (3.0, 10))  # (guidance, steps) of the reference images


def render(pipe, weights_sha256: str, prompts: int = 8, settings=RENDER_SETTINGS) -> dict:
    """Reference images of the default run's first prompts at a few (guidance, steps), with what
    made them: the arrays another machine's renders are compared with."""
    import platform

    import torch

    selection = evaluation_prompts(prompts)
    texts, seeds = selection["prompt"].tolist(), selection["seed"].tolist()
    images = np.stack([generate(pipe, texts, seeds, guidance, steps) for guidance, steps in settings])
    return {"images": images, "settings": np.array(settings), "prompts": np.array(texts), "seeds": np.array(seeds),
            "weights_sha256": np.array(weights_sha256), "torch": np.array(torch.__version__),
            "machine": np.array(f"{platform.machine()} {platform.processor()} threads={torch.get_num_threads()}")}


def compare_renders(a: dict, b: dict) -> pd.DataFrame:
    """Per (guidance, steps): identical bytes?, largest pixel difference, PSNR between the two
    machines' images, and each machine's mean prompt adherence."""
    if str(a["weights_sha256"]) != str(b["weights_sha256"]) or list(a["prompts"]) != list(b["prompts"]):
        raise ValueError("the two renders come from different weights or prompts")
    prompts, rows = [str(p) for p in a["prompts"]], []
    for (guidance, steps), x, y in zip(a["settings"], a["images"], b["images"]):
        mse = float(((x.astype(np.float64) - y) ** 2).mean())
        rows.append({"guidance": float(guidance), "steps": int(steps), "identical": bool(np.array_equal(x, y)),
                     "max_abs_diff": int(np.abs(x.astype(int) - y).max()),
                     "psnr_db": float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse),
                     "adherence_a": float(adherence_table(x, prompts)["overall"].mean()),
                     "adherence_b": float(adherence_table(y, prompts)["overall"].mean())})
    return pd.DataFrame(rows)


RUN_METRICS = ("psnr", "ssim", "adherence_overall")


def compare_runs(a: Path, b: Path, model: str = "tiny") -> pd.DataFrame:
    """Per variant present in both runs' results folders: each metric's mean over the prompts in
    either run (PSNR's infinite self-comparison left out)."""
    rows = []
    for path in sorted((Path(a) / "metrics" / model / "per_image").glob("*.csv")):
        other = Path(b) / "metrics" / model / "per_image" / path.name
        if not other.exists():
            continue
        x, y = pd.read_csv(path), pd.read_csv(other)
        row = {"variant": path.stem}
        for metric in RUN_METRICS:
            row[f"{metric}_a"] = float(x[metric].replace(np.inf, np.nan).mean())
            row[f"{metric}_b"] = float(y[metric].replace(np.inf, np.nan).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def runs_markdown(table: pd.DataFrame) -> str:
    """The whole-run comparison as the docs show it: the change of each variant's mean metric."""
    lines = ["| variant | PSNR a (dB) | PSNR b − a (dB) | SSIM b − a | adherence a / b |", "|:---|---:|---:|---:|:---|"]
    for row in table.itertuples(index=False):
        psnr = "—" if np.isnan(row.psnr_a) else f"{row.psnr_a:.2f}"
        delta = "—" if np.isnan(row.psnr_a) else f"{row.psnr_b - row.psnr_a:+.4f}"
        lines.append(f"| {row.variant} | {psnr} | {delta} | {row.ssim_b - row.ssim_a:+.5f} | "
                     f"{row.adherence_overall_a:.1%} / {row.adherence_overall_b:.1%} |")
    return "\n".join(lines)


def repro_markdown(table: pd.DataFrame) -> str:
    """Comparisons of renders from two machines (or CPU kernel paths), as the docs show them."""
    lines = ["| machines | guidance | steps | identical | largest pixel difference | PSNR (dB) | adherence a / b |",
             "|:---|---:|---:|:---|---:|---:|:---|"]
    for row in table.itertuples(index=False):
        psnr = "inf" if np.isinf(row.psnr_db) else f"{row.psnr_db:.1f}"
        lines.append(f"| {row.machines} | {row.guidance:g} | {row.steps} | {'yes' if row.identical else 'no'} | "
                     f"{row.max_abs_diff} | {psnr} | {row.adherence_a:.0%} / {row.adherence_b:.0%} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    import torch

    from . import models

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("grid")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--weights", type=Path, default=models.COMMITTED_WEIGHTS)
    run.add_argument("--device", default="cpu")
    run.add_argument("--prompts", type=int, default=GRID_PROMPTS)
    show = sub.add_parser("table")
    show.add_argument("csv", type=Path)
    describe = sub.add_parser("training")
    describe.add_argument("weights", type=Path)
    reference = sub.add_parser("render")
    reference.add_argument("--out", type=Path, required=True)
    reference.add_argument("--weights", type=Path, default=models.COMMITTED_WEIGHTS)
    both = sub.add_parser("compare")
    both.add_argument("a", type=Path)
    both.add_argument("b", type=Path)
    both.add_argument("--label", help="with --csv: what differs between the two renders' machines")
    both.add_argument("--csv", type=Path, help="append the comparison to this CSV (docs' repro table)")
    repro = sub.add_parser("repro", help="the docs' table of a compare CSV")
    repro.add_argument("csv", type=Path)
    runs = sub.add_parser("compare-runs", help="two default runs' mean metrics per variant")
    runs.add_argument("a", type=Path, help="results folder of run a")
    runs.add_argument("b", type=Path, help="results folder of run b")
    runs.add_argument("--csv", type=Path, required=True)
    runs_table = sub.add_parser("runs", help="the docs' table of a compare-runs CSV")
    runs_table.add_argument("csv", type=Path)
    args = parser.parse_args(argv)
    if args.command == "compare":
        table = compare_renders(dict(np.load(args.a)), dict(np.load(args.b)))
        print(table.to_string(index=False))
        if args.csv:
            table.insert(0, "machines", args.label or f"{args.a.name} vs {args.b.name}")
            old = pd.read_csv(args.csv) if args.csv.exists() else None
            pd.concat([old, table]).to_csv(args.csv, index=False, float_format="%.4f")
        return
    if args.command == "compare-runs":
        compare_runs(args.a, args.b).to_csv(args.csv, index=False, float_format="%.6f")
        print(runs_markdown(pd.read_csv(args.csv)))
        return
    csv_tables = {"table": markdown, "runs": runs_markdown, "repro": repro_markdown}  # a committed CSV -> docs
    if args.command in csv_tables:
        print(csv_tables[args.command](pd.read_csv(args.csv)))
        return
    if args.command == "training":
        print(training_markdown(args.weights))
        return
    if args.command == "render":
        torch.set_num_threads(1)  # CPU float32 on one thread: the run's own setting
        record: dict = {}
        pipe = models.build_tiny_pipeline(models.TinySpec(), args.weights, record)
        pipe.set_progress_bar_config(disable=True)
        np.savez_compressed(args.out, **render(pipe, record["weights_sha256"]))
        return
    if args.device == "cpu":
        torch.set_num_threads(1)
    pipe = models.trained_tiny_pipeline(args.weights).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    table = grid(pipe, evaluation_prompts(args.prompts))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, float_format="%.4f")
    print(markdown(table))


if __name__ == "__main__":
    main()
