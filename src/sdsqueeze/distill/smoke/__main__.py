"""python -m sdsqueeze.distill.smoke: one trainer on a seeded architecture (see the package docstring)."""

import argparse
import sys

from ... import io
from . import ARCHS, TRAINERS, run


def render(argv) -> None:
    """--render RESULTS CONFIG: print docs/distillation.md's H200 block from a committed results file."""
    import json
    from pathlib import Path

    import yaml

    from . import doc_block

    results, config = Path(argv[0]), Path(argv[1])
    students = yaml.safe_load(config.read_text())["distill"]["students"]
    print(doc_block(json.loads(results.read_text())["runs"], students, str(config)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="A distillation trainer's smoke run on a seeded architecture.")
    parser.add_argument("--trainer", choices=sorted(TRAINERS), nargs="+", required=True,
                        help="one or more trainers, run in turn on the same teacher and teacher data")
    parser.add_argument("--arch", choices=ARCHS, default="sd15")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--prompts", type=int, default=16, help="teacher-data examples")
    parser.add_argument("--teacher-steps", type=int, default=10)
    parser.add_argument("--remove", default="", help="BK-SDM removals, comma-separated")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokenizer", default=None, help="CLIP tokenizer folder (written when absent)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return run(args, on_record=lambda records: io.write_json(args.out, {"runs": records}))


if sys.argv[1:2] == ["--render"]:
    render(sys.argv[2:])
else:
    main()
