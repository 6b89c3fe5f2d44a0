"""GPU benchmark of the acceleration and low-bit variants .

    python benchmarks/gpu_benchmark.py --shape sd15 --device cuda --groups eager compiled lowbit \
        --tokenizer TOKENIZER_DIR --out OUT_DIR
    python benchmarks/gpu_benchmark.py --shape tiny --device cpu --size 64 --steps 4 --batches 1 \
        --groups cpu --out /tmp/bench          # CPU smoke run

Writes OUT/results.csv (one row per variant x batch), OUT/meta.json (device, versions, FLOPs,
measured matmul rate, command) and OUT/profiles.txt (torch.profiler tables). Every variant is a
variant spec in the config's own schema, applied by sdsqueeze.variants.prepare, so the benchmark
measures exactly what the pipeline runs. The model is the SD 1.5 architecture with seeded weights.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sdbench.run import main  # noqa: E402 - sdbench sits beside this script

if __name__ == "__main__":
    raise SystemExit(main())
