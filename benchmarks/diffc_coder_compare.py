"""Rate-distortion of two DiffC coders on the same model and images, and PSNR at equal rate.

    # one rate-distortion table per coder (run once with each checkout's src/ on PYTHONPATH)
    PYTHONPATH=<old checkout>/src python benchmarks/diffc_coder_compare.py measure --model DIR --out old.csv
    PYTHONPATH=src python benchmarks/diffc_coder_compare.py measure --model DIR --out new.csv
    # the comparison, written into docs/diffc.md between its generated-block markers
    python benchmarks/diffc_coder_compare.py summarize old.csv new.csv --doc docs/diffc.md

``measure`` uses only runs.encode_shard / decode_shard / rate_distortion, which both coders share,
with the default config's DiffC settings (config.yaml) at the model's native size.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def measure(model_dir: str, out_csv: str) -> None:
    import torch
    import yaml

    from sdsqueeze.diffc import runs
    from sdsqueeze.models import load_pipeline

    torch.set_num_threads(1)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())["diffc"]
    cfg = {"block_rows_log2": 12, "size": None, **cfg}
    pipe = load_pipeline(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        enc, dec = Path(tmp) / "enc", Path(tmp) / "dec"
        enc.mkdir(), dec.mkdir()
        runs.encode_shard(pipe, cfg["images"], cfg, 42, enc)
        runs.decode_shard(pipe, enc, dec, redecode="none")
        table = runs.rate_distortion("embedded", [enc], [dec])
    table[table.method == "diffc"].to_csv(out_csv, index=False)


def psnr_at_equal_rate(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Per image and old rate point: the new coder's PSNR interpolated (linearly in bpp) at the old
    file's bpp, where that bpp lies inside the new coder's measured range."""
    rows = []
    for image, old_image in old.groupby("image"):
        new_image = new[new.image == image].sort_values("bpp")
        for point in old_image.itertuples():
            if new_image.bpp.min() <= point.bpp <= new_image.bpp.max():
                new_psnr = float(np.interp(point.bpp, new_image.bpp, new_image.psnr))
                rows.append({"image": image, "recon_timestep": point.recon_timestep, "bpp": point.bpp,
                             "old_psnr": point.psnr, "new_psnr": new_psnr, "delta_db": new_psnr - point.psnr})
    return pd.DataFrame(rows)


def summary_markdown(old: pd.DataFrame, new: pd.DataFrame) -> str:
    columns = ["bpp", "psnr", "latent_snr_db"]
    per_point = old.groupby("recon_timestep")[columns].mean().merge(
        new.groupby("recon_timestep")[columns].mean(), left_index=True, right_index=True, suffixes=("_old", "_new"))
    lines = ["| recon t | bpp old | bpp new | PSNR old dB | PSNR new dB | latent SNR old dB | latent SNR new dB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for t, r in per_point.sort_index(ascending=False).iterrows():
        lines.append(f"| {t} | {r.bpp_old:.4f} | {r.bpp_new:.4f} | {r.psnr_old:.2f} | {r.psnr_new:.2f} | "
                     f"{r.latent_snr_db_old:.2f} | {r.latent_snr_db_new:.2f} |")
    equal = psnr_at_equal_rate(old, new)
    if len(equal):
        lines.append("")
        lines.append(f"PSNR of the corrected coder minus the old one at equal rate (interpolated at the old "
                     f"files' bpp, {len(equal)} of {len(old)} files inside the new coder's range): mean "
                     f"{equal.delta_db.mean():+.2f} dB, range {equal.delta_db.min():+.2f} to "
                     f"{equal.delta_db.max():+.2f} dB. Mean file size at the same recon timestep: "
                     f"{new.bytes.mean() / old.bytes.mean():.2f}x the old coder's; encode time per image (all "
                     f"rate points, one CPU thread): {new.encode_seconds_all_rate_points.mean() / old.encode_seconds_all_rate_points.mean():.1f}x "
                     "(the new run includes its self-check decode; chunks in higher budget classes search "
                     "more candidates).")
    return "\n".join(lines)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def read_block(doc: Path, name: str) -> str:
    begin, end = markers(name)
    source = doc.read_text()
    if begin not in source or end not in source:
        raise SystemExit(f"{doc}: no {begin} ... {end} block")
    return source.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def write_block(doc: Path, text: str, name: str = "coder-compare") -> None:
    """Replace the generated block ``name`` of a markdown file (markers stay)."""
    read_block(doc, name)  # refuses a file without the markers
    begin, end = markers(name)
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    doc.write_text(pattern.sub(lambda _: f"{begin}\n{text}\n{end}", doc.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--model", required=True, help="a saved diffusers folder")
    m.add_argument("--out", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("old_csv")
    s.add_argument("new_csv")
    s.add_argument("--doc", help="write the block into this markdown file (else print it)")
    args = parser.parse_args(argv)
    if args.command == "measure":
        measure(args.model, args.out)
        return 0
    text = summary_markdown(pd.read_csv(args.old_csv), pd.read_csv(args.new_csv))
    write_block(Path(args.doc), text) if args.doc else print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
