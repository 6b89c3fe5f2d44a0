"""Put the workflow's own src/ first on sys.path, so every `script:` entry point imports this
checkout's sdsqueeze package — installed or not (an editable install of another checkout
included), in any conda env, on any cluster node that sees the workflow directory. (Snakemake
appends the script's own folder to sys.path, which is how `import _srcpath` finds this file.)"""

import os
import sys
from pathlib import Path

# OpenMP threads that spin while waiting make a loaded machine (a shared workstation, several
# jobs at once) crawl: seen here, one job 139 s with spinning vs 7 s without. Numerics unchanged.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SRC = str(Path(__file__).resolve().parent.parent / "src")
# First, even when it is already on the path: Snakemake hands a job the parent's sys.path, where
# an editable install of another checkout can come before this one.
while SRC in sys.path:
    sys.path.remove(SRC)
sys.path.insert(0, SRC)
# A package imported before this line (from anywhere else) is forgotten, so the next import
# loads this checkout's copy.
for name in [m for m in sys.modules if m == "sdsqueeze" or m.startswith("sdsqueeze.")]:
    if not str(getattr(sys.modules[name], "__file__", "") or "").startswith(SRC + os.sep):
        del sys.modules[name]
