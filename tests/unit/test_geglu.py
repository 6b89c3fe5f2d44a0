"""The fused GEGLU (accel/geglu.py): diffusers' GEGLU values, one GEMM with the gate in its epilogue."""


import torch
from diffusers.models.activations import GEGLU

from sdsqueeze.accel.geglu import use_fused_geglu


def test_swap_keeps_parameters_and_the_stock_forward_off_cuda():
    torch.manual_seed(0)
    block = torch.nn.Sequential(GEGLU(16, 32), torch.nn.Linear(32, 8), GEGLU(8, 4))
    before = {k: v.clone() for k, v in block.state_dict().items()}
    x = torch.randn(2, 5, 16)
    expected = block(x)
    assert use_fused_geglu(block) == 2
    assert use_fused_geglu(block) == 0  # already swapped
    assert isinstance(block[0], GEGLU) and type(block[0]) is not GEGLU
    after = block.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert torch.equal(block(x), expected)  # a CPU input takes diffusers' own forward


KERNEL_CHECK = """
import torch
import sdsqueeze.accel.geglu
torch.manual_seed(0)
for rows, depth, cols, bias in ((200, 96, 40, True), (64, 64, 32, False), (130, 320, 160, True)):
    x = torch.randn(rows, depth).half()
    w = (torch.randn(2 * cols, depth) / depth ** 0.5).half()
    b = torch.randn(2 * cols).half() if bias else None
    got = torch.ops.sdsqueeze.geglu(x, w, b)
    full = x.double() @ w.double().T + (b.double() if bias else 0)
    value, gate = full.chunk(2, dim=-1)
    exact = value * torch.nn.functional.gelu(gate)
    # the stock path's rounding: projection to fp16, gelu and product in fp16
    half = (x.float() @ w.float().T + (b.float() if bias else 0)).half()
    value16, gate16 = half.chunk(2, dim=-1)
    stock = (value16.float() * torch.nn.functional.gelu(gate16.float())).half()
    assert got.shape == (rows, cols) and got.dtype == torch.float16
    got_err, stock_err = ((t.double() - exact).abs().max() for t in (got, stock))
    assert got_err <= stock_err + 1e-3, (rows, depth, cols, float(got_err), float(stock_err))
print("kernel ok")
"""


def test_triton_kernel_matches_float64_at_least_as_well_as_the_stock_rounding_in_interpreter(triton_interpreter):
    """Ragged tiles in rows, columns and depth; with and without bias."""
    assert "kernel ok" in triton_interpreter(KERNEL_CHECK)


def test_kernel_limits_geglu_table_sums_per_unet_call_and_shows_both_errors():
    import pandas as pd
    import render_tables  # benchmarks/, on the path through tests/conftest.py

    gates = pd.DataFrame({"kind": "geglu", "tokens": [4096, 1024], "width": [320, 640], "per_unet_call": [5, 5],
                          "stock_us": [160.0, 80.0], "fused_us": [100.0, 50.0], "fused_tflops": [540.0, 500.0],
                          "fused_share_of_bf16_peak": [0.68, 0.63], "stock_max_abs_err": [0.004, 0.004],
                          "fused_max_abs_err": [0.002, 0.002]})
    head, table = render_tables._geglu_part(gates)
    assert "per UNet call 1200 us as diffusers' module" in head and "750 us as one GEMM" in head
    assert "| 4096 | 320 | 5 | 160.0 | 100.0 | 540 | 68% | 0.004 / 0.002 |" in table


def test_kernel_limits_geglu_table_shows_the_gemm_alone_when_the_run_timed_it():
    import pandas as pd
    import render_tables  # benchmarks/, on the path through tests/conftest.py

    gates = pd.DataFrame({"kind": "geglu", "tokens": [4096, 64], "width": [320, 1280], "per_unet_call": [5, 1],
                          "stock_us": [160.0, 30.0], "gemm_us": [110.0, 20.0], "fused_us": [150.0, 35.0],
                          "fused_tflops": [300.0, 350.0], "fused_share_of_bf16_peak": [0.38, 0.44],
                          "stock_max_abs_err": [0.005, 0.002], "fused_max_abs_err": [0.002, 0.002]})
    head, table = render_tables._geglu_part(gates)
    assert "per UNet call 830 us as diffusers' module" in head and "570 us for cuBLAS's GEMM alone" in head
    assert "| stock us | GEMM alone us | fused us |" in table
    assert "| 4096 | 320 | 5 | 160.0 | 110.0 | 150.0 | 300 | 38% | 0.005 / 0.002 |" in table
