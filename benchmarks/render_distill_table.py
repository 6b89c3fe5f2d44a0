"""Print docs/distillation.md's H200 training table from the committed smoke results:

    python benchmarks/render_distill_table.py

(docs/distillation/h200_smoke.json, written by ``python -m sdsqueeze.distill.smoke``; the command
that produced it is inside the file.)"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sdsqueeze.distill.smoke import smoke_setup, smoke_table  # noqa: E402

records = json.loads((REPO / "docs" / "distillation" / "h200_smoke.json").read_text())["runs"]
print(smoke_setup(records))
print()
print(smoke_table(records))
