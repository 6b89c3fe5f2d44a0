"""Pack a GPU smoke run's evidence (benchmarks/gpu_dag/smoke.sh) into two archives small enough to bring back.

    python benchmarks/gpu_dag/pack.py WORKFLOW_DIR STATE_DIR

evidence.tar.gz: the run's command, logs, exit codes and wall time, nvidia-smi samples, every job's
Snakemake benchmark tsv and log, the model record, and each output set's manifest, provenance and
tables (no images). report.tar.gz: results/report/ and the image files its page links, downscaled
to thumbnails (the seeded model's 512 px PNGs are incompressible noise), at the same relative paths.
"""

from __future__ import annotations

import re
import sys
import tarfile
from pathlib import Path

THUMBNAIL_PX = 128
EVIDENCE_PATTERNS = ("results/benchmarks/**/*.tsv", "logs/**/*.log", "resources/models/*/model.json",
                     "results/**/manifest.csv", "results/**/provenance.json", "results/**/*.json",
                     "results/metrics/**/*.csv", "results/diffc/**/*.csv", "results/sweep/**/*.csv",
                     "results/quant/**/*.csv", "results/calibration/**/*.json", "results/prompts/*.csv")
STATE_FILES = ("command.txt", "run1.log", "run1.rc", "run1.seconds", "run2.log", "run2.rc", "gpu_samples.csv")


def evidence_files(root: Path) -> list[Path]:
    found = {path for pattern in EVIDENCE_PATTERNS for path in root.glob(pattern) if path.is_file()}
    return sorted(p for p in found if p.stat().st_size < 20 * 2**20)


def linked_files(html_path: Path) -> list[str]:
    """Relative src/href targets of the page that lie outside its folder (the image shards)."""
    text = html_path.read_text()
    targets = re.findall(r'(?:src|href)="([^"#:]+)"', text)
    return sorted({t for t in targets if t.startswith("../")})


def thumbnail(source: Path, target: Path) -> None:
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        image.save(target, format="PNG", optimize=True)


def pack(root: Path, state: Path) -> None:
    with tarfile.open(state / "evidence.tar.gz", "w:gz") as tar:
        for path in evidence_files(root):
            tar.add(path, arcname=str(path.relative_to(root)))
        for name in STATE_FILES:
            if (state / name).is_file():
                tar.add(state / name, arcname=f"run/{name}")
    report = root / "results" / "report"
    if not (report / "index.html").is_file():
        print("no report to pack")
        return
    staging = state / "report-staging"
    with tarfile.open(state / "report.tar.gz", "w:gz") as tar:
        tar.add(report, arcname="report")
        for link in linked_files(report / "index.html"):
            source = (report / link).resolve()
            if source.suffix.lower() == ".png" and source.is_file():
                target = staging / Path(link.replace("../", "", 1))
                thumbnail(source, target)
                tar.add(target, arcname=str(Path(link.replace("../", "", 1))))
    for archive in ("evidence.tar.gz", "report.tar.gz"):
        print(archive, (state / archive).stat().st_size // 1024, "KiB")


if __name__ == "__main__":
    pack(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
