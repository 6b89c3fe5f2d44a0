"""Routes past the best 16-bit build (benchmarks/sdbench/routebench.py): the head-dim-40 attention
kernel against float64, and the routes table of docs/kernel-limits.md."""

import json
from pathlib import Path

import pandas as pd

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

ATTENTION_CHECK = f"""
import sys
import torch
sys.path.insert(0, {str(BENCHMARKS)!r})
from sdbench.shorthead import PADDED_64, SPLIT_48, attention
torch.manual_seed(0)
batch, heads, queries, keys, dim = 2, 3, 200, 150, 40
qkv = torch.randn(batch, queries, 3 * heads * dim).half()  # the fused projection's strided views
q, k, v = (t.view(batch, queries, heads, dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
k, v = k[:, :, :keys] * 2, v[:, :, :keys]  # ragged key tiles, larger scores
exact = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
stock = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float()).half()
for parts in (SPLIT_48, PADDED_64):
    got = attention(q, k, v, parts=parts, block_m=32, block_n=32)
    assert got.shape == q.shape and got.dtype == torch.float16
    assert got.transpose(1, 2).is_contiguous()  # token-major, as the output projection reads it
    got_err, stock_err = ((t.double() - exact).abs().max() for t in (got, stock))
    assert got_err <= 2 * stock_err + 1e-3, (parts, float(got_err), float(stock_err))
try:
    attention(q, k, v, parts=(32, 8))
except ValueError as err:
    assert "needs parts" in str(err)
else:
    raise AssertionError("a head without a padding column was accepted")
print("attention ok")
"""


def test_head_dim_40_attention_matches_float64_in_interpreter(triton_interpreter):
    """Both head widths (48 and 64 columns), ragged query and key tiles, strided inputs."""
    assert "attention ok" in triton_interpreter(ATTENTION_CHECK)


def test_routes_table_keeps_two_attention_launches_and_reads_findings_from_all(tmp_path):
    import render_tables  # benchmarks/, on the path through tests/conftest.py

    rows = [{"kind": "exp2", "route": "pairs", "current": "fp32 exp2", "current_us": 100.0, "route_us": 200.0,
             "speedup": 0.5, "current_rate": 4.0, "route_rate": 2.0}]
    rows += [{"kind": "attention", "route": f"launch {us}", "current": "cuDNN SDPA", "current_us": 600.0,
              "route_us": float(us), "speedup": 600.0 / us, "current_error": 1e-4, "route_error": 2e-4,
              "shape": "8 heads"} for us in (1500, 1200, 1300)]
    rows += [{"kind": "gemm", "route": "autotuned", "current": "default", "current_us": 50.0, "route_us": us,
              "speedup": 50.0 / us, "current_rate": 400.0, "route_rate": 20000 / us, "shape": f"s{us}"}
             for us in (40.0, 60.0)]
    pd.DataFrame(rows).to_csv(tmp_path / "route_rates.csv", index=False)
    meta = {"machine": "H200 (test)", "versions": {"gpu": "NVIDIA H200", "torch": "2.11"}, "note": "kernels alone",
            "command": "python benchmarks/kernel_routes.py --out X"}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    text = render_tables.routes_markdown(tmp_path)
    assert "launch 1200" in text and "launch 1300" in text and "| launch 1500" not in text
    assert "the fastest of 3 launches (launch 1200) takes 1200 us, 0.50x cuDNN's 600 us" in text
    assert "2.00 T/s against fp32's 4.00 T/s" in text
    assert "0.83x-1.25x the default at these shapes, 1.00x over them together" in text

