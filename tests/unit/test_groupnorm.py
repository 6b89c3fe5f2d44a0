"""The channels-last GroupNorm gives nn.GroupNorm's values (accel/groupnorm.py)."""

import pytest
import torch
from torch import nn

from sdsqueeze.accel.groupnorm import ChannelsLastGroupNorm, use_channels_last_group_norm


def _pair(channels: int, groups: int, eps: float = 1e-5):
    torch.manual_seed(0)
    stock = nn.GroupNorm(groups, channels, eps=eps)
    nn.init.normal_(stock.weight)
    nn.init.normal_(stock.bias)
    ours = nn.GroupNorm(groups, channels, eps=eps)
    ours.load_state_dict(stock.state_dict())
    assert use_channels_last_group_norm(ours) == 1
    return stock, ours


@pytest.mark.parametrize("shape,groups", [((2, 320, 16, 16), 32), ((3, 64, 10, 6), 32), ((1, 96, 8, 8), 3),
                                          ((2, 40, 1, 1), 4)])
@pytest.mark.parametrize("offset", [0.0, 40.0])
def test_matches_float64_groupnorm_on_channels_last_input(shape, groups, offset):
    stock, ours = _pair(shape[1], groups)
    # An offset mean tests the variance formula where E[x^2] - E[x]^2 would cancel.
    x = (torch.randn(shape) * 3 + offset).to(memory_format=torch.channels_last)
    exact = nn.functional.group_norm(x.double(), groups, stock.weight.double(), stock.bias.double(), stock.eps)
    got = ours(x)
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=2e-5)
    # no less accurate than the stock float32 kernel
    assert (got.double() - exact).abs().max() <= 2 * (stock(x).double() - exact).abs().max() + 1e-6
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_half_precision_input_keeps_its_dtype_and_values():
    stock, ours = _pair(128, 32)
    x = torch.randn(2, 128, 8, 8).half().to(memory_format=torch.channels_last)
    got = ours(x)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), stock.float()(x.float()).half().float(), rtol=2e-3, atol=2e-3)


def test_other_layouts_take_the_stock_path_with_identical_values():
    stock, ours = _pair(64, 8)
    for x in (torch.randn(2, 64, 5, 5), torch.randn(2, 64, 30)):
        assert torch.equal(ours(x), stock(x))


def test_swap_keeps_parameters_and_state_dict_keys():
    block = nn.Sequential(nn.Conv2d(4, 64, 3), nn.GroupNorm(32, 64), nn.SiLU(), nn.GroupNorm(8, 64))
    before = {k: v.clone() for k, v in block.state_dict().items()}
    assert use_channels_last_group_norm(block) == 2
    assert isinstance(block[1], ChannelsLastGroupNorm) and isinstance(block[3], ChannelsLastGroupNorm)
    after = block.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert use_channels_last_group_norm(block) == 0  # already swapped


def test_compiled_matches_eager():
    stock, ours = _pair(64, 32)
    x = torch.randn(2, 64, 8, 8).to(memory_format=torch.channels_last)
    compiled = torch.compile(lambda t: nn.functional.silu(ours(t)), dynamic=False)
    torch.testing.assert_close(compiled(x), nn.functional.silu(stock(x)), rtol=1e-5, atol=2e-5)


MOMENTS_CHECK = """
import torch
from sdsqueeze.accel import groupnorm
for chunk_rows in (64, 256):  # one tile per chunk, and a chunk streamed through several tiles
    rows = (torch.randn(4 * 256, 320) * 3 + 5).half()
    mean, var = torch.ops.sdsqueeze.chunk_moments(rows, chunk_rows)
    exact_var, exact_mean = torch.var_mean(rows.double().reshape(-1, chunk_rows, 320), dim=1, correction=0)
    assert mean.shape == (4 * 256 // chunk_rows, 320) and mean.dtype == torch.float32
    assert (mean - exact_mean).abs().max() < 1e-5 and (var - exact_var).abs().max() < 1e-4, "moments differ"
chunk_mean, chunk_var = torch.randn(2, 5, 96) + 3, torch.rand(2, 5, 96) + 0.5
weight, bias = torch.randn(96), torch.randn(96)
got = torch.ops.sdsqueeze.group_scale_shift(chunk_mean, chunk_var, 8, weight, bias, 1e-5)
expected = groupnorm.group_scale_shift(chunk_mean, chunk_var, 8, weight, bias, 1e-5)  # the torch path
for g, e in zip(got, expected):
    assert g.shape == (2, 96) and (g - e).abs().max() < 1e-5, "scale and shift differ"
print("kernels ok")
"""


def test_triton_kernels_match_float64_and_torch_path_in_interpreter(triton_interpreter):
    assert "kernels ok" in triton_interpreter(MOMENTS_CHECK)


@pytest.mark.parametrize("pixels,channels,rows", [(4096, 320, 256), (4096, 960, 512), (1024, 640, 128),
                                                  (256, 1280, 64), (64, 1280, 64), (49, 96, 1)])
def test_chunk_length_depends_on_the_shape_only_and_divides_the_pixels(pixels, channels, rows):
    from sdsqueeze.accel.groupnorm import chunk_rows_for

    assert chunk_rows_for(pixels, channels) == rows and pixels % rows == 0
