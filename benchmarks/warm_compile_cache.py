"""Compile benchmark variants in parallel into the Inductor cache before a timed run.

    export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
    python benchmarks/warm_compile_cache.py --jobs host:fp16-compiled-host,compiled:fp16-sdpa-compile \
        lowbit:fp16-int8dyn-compiled,lowbit:bf16-fp8dyn-compiled --tokenizer TOKENIZER_DIR --out OUT_DIR
    python benchmarks/gpu_benchmark.py ...   # same TORCHINDUCTOR_CACHE_DIR: compiled graphs load from it

Each --jobs entry is one process; OUT_DIR/jobN.log and OUT_DIR/jobN/ hold its output.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sdbench.warmcache import main  # noqa: E402 - sdbench sits beside this script

if __name__ == "__main__":
    raise SystemExit(main())
