"""docs/diffc.md's generated blocks match the committed result files they are made from."""

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "diffc.md"
RESULTS = REPO / "docs" / "benchmarks"


def benchmark(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_coder_comparison_block_comes_from_the_committed_tables():
    compare = benchmark("diffc_coder_compare")
    old, new = pd.read_csv(RESULTS / "diffc_coder_old.csv"), pd.read_csv(RESULTS / "diffc_coder_new.csv")
    assert compare.read_block(DOC, "coder-compare") == compare.summary_markdown(old, new)


def test_corrected_coder_keeps_every_chunk_within_its_budget_on_the_embedded_default():
    new = pd.read_csv(RESULTS / "diffc_coder_new.csv")
    assert len(new) == 20 and (new.chunk_kl_excess_bits <= 1e-9).all()


def test_gpu_block_comes_from_the_committed_json():
    compare, gpu = benchmark("diffc_coder_compare"), benchmark("diffc_gpu")
    result = json.loads((RESULTS / "diffc_gpu.json").read_text())
    assert compare.read_block(DOC, "diffc-gpu") == gpu.summary_markdown(result)
    cpu = next(trip for trip in result["round_trip"] if trip["device"] == "cpu")
    assert all(point["receiver_latent_equals_sender"] for point in cpu["rate_points"].values())
