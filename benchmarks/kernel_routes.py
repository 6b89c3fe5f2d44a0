"""Routes past the best 16-bit build's kernels, measured alone on a GPU (sdbench/routebench.py):

    python benchmarks/kernel_routes.py --device cuda --machine 'NVIDIA H200' --out OUT_DIR

Writes OUT/route_rates.csv (one row per route and shape: the current kernel's and the route's
microseconds) and OUT/meta.json (command, machine, versions). docs/kernel-limits.md's routes table is
`python benchmarks/render_tables.py --routes`, from benchmarks/results/routes_h200/.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sdbench import harness  # noqa: E402 - sdbench sits beside this script
from sdbench.routebench import route_rates  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--machine", default=None, help="how the docs name the machine (default: the GPU's name)")
    parser.add_argument("--time-budget", type=float, default=0, help="seconds; later GEMM shapes are skipped")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    versions = harness.versions()
    table = route_rates(args.device, lambda line: print(line, flush=True),
                        deadline=started + args.time_budget if args.time_budget else 0)
    table.to_csv(out / "route_rates.csv", index=False)
    meta = {"command": "python benchmarks/kernel_routes.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": args.machine or versions.get("gpu", args.device), "versions": versions,
            "note": "kernels alone at SD 1.5's UNet shapes, seeded inputs (no model weights involved)",
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "elapsed_s": time.time() - started}
    (out / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
