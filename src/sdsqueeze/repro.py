"""Does a run give the same numbers on another machine? A fingerprint of a run, and a comparison.

    python -m sdsqueeze.repro fingerprint results/ -o fingerprint.json
    python -m sdsqueeze.repro compare fingerprint-a.json fingerprint-b.json

A fingerprint (JSON) holds what must agree between machines: the hash of every prompts CSV, of
every model weights file, of every generated image (from the manifests, which the generation jobs
write and the metrics jobs verify), and per variant the summaries the verdicts rest on — mean
PSNR against the reference and the prompt-adherence rates — plus the software and CPU that made it
(for reading a difference, not compared). ``compare`` says what differs and by how much: hashes
must be equal; PSNR may move by ``psnr_db`` (0.1 dB) and adherence by ``adherence_points`` (1
percentage point) where torch's CPU kernels round differently. The exit status is 0 when every
difference is within tolerance, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .intermediates import sha256_file
from .quality.verdicts import PSNR_CAP_DB

FORMAT = 1
TOLERANCE = {"psnr_db": 0.1, "adherence_points": 1.0}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
# per-image columns summarised as rates in percentage points (booleans or 0/1 per image)
ADHERENCE_PREFIX = "adherence"
# kinds of compared items; image bytes may differ when the numbers still agree
INPUT, BYTES, NUMBER, PRESENCE = "input", "image bytes", "number", "presence"
IDENTICAL, WITHIN_TOLERANCE, DIFFERENT = "identical", "within tolerance", "different"


def fingerprint(results: str | Path, models: str | Path | None = None) -> dict:
    """The fingerprint of the run under ``results`` (weights from ``models``, by default the
    ``resources/models`` folder beside ``results``)."""
    results = Path(results)
    models = Path(models) if models is not None else results.parent / "resources" / "models"
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: no results folder")
    return {
        "format": FORMAT,
        "prompts": {p.name: sha256_file(p) for p in sorted((results / "prompts").glob("*.csv"))},
        "weights": weight_hashes(models),
        "variants": {model.name: variant_prints(results, model.name)
                     for model in sorted((results / "images").glob("*")) if model.is_dir()},
        "environment": environment(results),
    }


def weight_hashes(models: Path) -> dict[str, str]:
    """sha256 of every weights file below ``models``, by path relative to it."""
    if not models.is_dir():
        return {}
    return {str(p.relative_to(models)): sha256_file(p) for p in sorted(models.rglob("*"))
            if p.suffix in WEIGHT_SUFFIXES and p.is_file()}


def variant_prints(results: Path, model: str) -> dict[str, dict]:
    """Per variant of one model: image hashes and the metric summaries."""
    out = {}
    for variant_dir in sorted((results / "images" / model).glob("*")):
        manifests = [pd.read_csv(m) for m in sorted(variant_dir.glob("shard-*/manifest.csv"))]
        if not manifests:
            continue
        images = pd.concat(manifests).sort_values(["prompt_id", "sample"])
        entry = {"images": dict(zip(images.file, images.sha256))}
        per_image = results / "metrics" / model / "per_image" / f"{variant_dir.name}.csv"
        if per_image.is_file():
            entry["summary"] = metric_summary(pd.read_csv(per_image))
        out[variant_dir.name] = entry
    return out


def metric_summary(per_image: pd.DataFrame) -> dict[str, float]:
    """Mean PSNR in dB (identical images capped at the verdicts' cap, so the mean stays finite)
    and each adherence column's rate in percentage points."""
    summary = {"n_images": len(per_image)}
    if "psnr" in per_image:
        summary["psnr_db"] = float(per_image.psnr.clip(upper=PSNR_CAP_DB).mean())
    for column in per_image.columns:
        if column.startswith(ADHERENCE_PREFIX) and not column.endswith("_status"):
            values = pd.to_numeric(per_image[column], errors="coerce").dropna()
            if len(values):
                summary[f"{column}_points"] = float(100 * values.astype(float).mean())
    return summary


def environment(results: Path) -> dict:
    """Software and device of the run, from the first image shard's provenance (where present),
    and the CPU model of the machine taking the fingerprint (normally the one that ran it)."""
    out = {"fingerprinted_on": {"cpu": cpu_name(), "machine": platform.machine()}}
    provenance = next(iter(sorted(results.glob("images/*/*/shard-*/provenance.json"))), None)
    if provenance is not None:
        record = json.loads(provenance.read_text())
        out.update(device=record.get("device", {}), packages=record.get("packages", {}))
    return out


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else the architecture: kernels differ by model."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


# --- comparison -------------------------------------------------------------------------------

def compare(a: dict, b: dict, tolerance: dict | None = None) -> pd.DataFrame:
    """One row per compared item: its kind (input hash, image bytes, number, presence), its values
    on both sides, the difference, the tolerance, and whether it is within. Hashes must be equal."""
    tolerance = {**TOLERANCE, **(tolerance or {})}
    rows = []
    for kind in ("prompts", "weights"):
        rows += hash_rows(kind, a.get(kind, {}), b.get(kind, {}))
    models = sorted(set(a.get("variants", {})) | set(b.get("variants", {})))
    for model in models:
        va, vb = a.get("variants", {}).get(model, {}), b.get("variants", {}).get(model, {})
        for variant in sorted(set(va) | set(vb)):
            rows += variant_rows(f"{model}/{variant}", va.get(variant), vb.get(variant), tolerance)
    return pd.DataFrame(rows, columns=["kind", "item", "a", "b", "difference", "tolerance", "within"])


def hash_rows(kind: str, a: dict, b: dict) -> list[dict]:
    rows = []
    for name in sorted(set(a) | set(b)):
        ha, hb = a.get(name), b.get(name)
        rows.append({"kind": INPUT, "item": f"{kind}: {name}", "a": _short(ha), "b": _short(hb),
                     "difference": "same" if ha == hb else "differs", "tolerance": "equal", "within": ha == hb})
    return rows


def variant_rows(name: str, a: dict | None, b: dict | None, tolerance: dict) -> list[dict]:
    if a is None or b is None:
        return [{"kind": PRESENCE, "item": f"{name}: variant", "a": "present" if a else "missing", "b": "present" if b else "missing",
                 "difference": "only on one side", "tolerance": "both", "within": False}]
    ia, ib = a.get("images", {}), b.get("images", {})
    same = sum(ia.get(f) == h for f, h in ib.items())
    total = len(set(ia) | set(ib))
    rows = [{"kind": BYTES, "item": f"{name}: images byte-identical", "a": len(ia), "b": len(ib),
             "difference": f"{same}/{total} identical", "tolerance": "equal", "within": same == total}]
    sa, sb = a.get("summary", {}), b.get("summary", {})
    for key in sorted(set(sa) | set(sb)):
        if key == "n_images":
            continue
        bound = tolerance["psnr_db"] if key == "psnr_db" else tolerance["adherence_points"]
        xa, xb = sa.get(key, np.nan), sb.get(key, np.nan)
        delta = xb - xa
        rows.append({"kind": NUMBER, "item": f"{name}: {key}", "a": round(xa, 4), "b": round(xb, 4), "difference": round(delta, 4),
                     "tolerance": bound, "within": bool(np.isfinite(delta) and abs(delta) <= bound)})
    return rows


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "missing"


def verdict(table: pd.DataFrame) -> str:
    """'identical' (every hash equal), 'within tolerance' (inputs equal and numbers agree, some
    images' bytes differ) or 'different' (an input differs, a variant is missing on one side, or a
    number is beyond its tolerance)."""
    if table.within.all():
        return IDENTICAL
    if table[table.kind != BYTES].within.all():
        return WITHIN_TOLERANCE
    return DIFFERENT


# --- command line -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdsqueeze.repro", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("fingerprint", help="write a run's fingerprint as JSON")
    make.add_argument("results", help="the run's results/ folder")
    make.add_argument("--models", help="folder of the model weights (default: resources/models beside results/)")
    make.add_argument("-o", "--output", help="JSON file to write (default: stdout)")
    check = commands.add_parser("compare", help="compare two fingerprints; exit 1 beyond tolerance")
    check.add_argument("a")
    check.add_argument("b")
    check.add_argument("--psnr-db", type=float, default=TOLERANCE["psnr_db"])
    check.add_argument("--adherence-points", type=float, default=TOLERANCE["adherence_points"])
    check.add_argument("--all", action="store_true", help="list every item, not only those that differ")
    args = parser.parse_args(argv)

    if args.command == "fingerprint":
        text = json.dumps(fingerprint(args.results, args.models), indent=2, sort_keys=True) + "\n"
        if args.output:
            from .io import write_text

            write_text(args.output, text)
        else:
            sys.stdout.write(text)
        return 0
    a, b = (json.loads(Path(p).read_text()) for p in (args.a, args.b))
    table = compare(a, b, {"psnr_db": args.psnr_db, "adherence_points": args.adherence_points})
    shown = table if args.all else table[~table.within]
    if not shown.empty:
        print(shown.to_string(index=False))
    for side, print_ in (("a", a), ("b", b)):
        env = print_.get("environment", {})
        cpu = env.get("fingerprinted_on", {}).get("cpu") or env.get("device", {}).get("cpu", "?")
        print(f"{side}: torch {env.get('packages', {}).get('torch', '?')}, cpu {cpu}")
    word = verdict(table)
    print(f"{word}: {int((~table.within).sum())} of {len(table)} items differ")
    return 0 if word != DIFFERENT else 1


if __name__ == "__main__":
    sys.exit(main())
