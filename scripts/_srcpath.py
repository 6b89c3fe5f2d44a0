"""Put the workflow's own src/ first on sys.path, so every `script:` entry point imports this
checkout's sdsqueeze package — installed or not, in any conda env, on any cluster node that sees
the workflow directory. (Snakemake appends the script's own folder to sys.path, which is how
`import _srcpath` finds this file.)"""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
