"""``python -m sdsqueeze.quant.doctable collect|render``: the command line of the doc tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import DATA_DIR, DOC, collect, render_block, replace_block
from . import __doc__ as PACKAGE_DOC


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sdsqueeze.quant.doctable", description=PACKAGE_DOC.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    grab = sub.add_parser("collect", help="copy a run's CSVs under docs/quantization/")
    grab.add_argument("--config", type=Path, default=Path("config.yaml"))
    grab.add_argument("--results", type=Path, default=Path("results"))
    grab.add_argument("--out", type=Path, default=DATA_DIR)
    grab.add_argument("--command", default="snakemake --cores 2", help="the command that produced the run")
    grab.add_argument("--snakemake-log", type=Path, help="the run's log (default: the newest in .snakemake/log)")
    show = sub.add_parser("render", help="rewrite the doc's generated block from the committed CSVs")
    show.add_argument("--data", type=Path, default=DATA_DIR)
    show.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    if args.action == "collect":
        collect(args.config, args.results, args.out, args.command, args.snakemake_log)
    else:
        args.doc.write_text(replace_block(args.doc.read_text(), render_block(args.data)))


if __name__ == "__main__":
    main(sys.argv[1:])
