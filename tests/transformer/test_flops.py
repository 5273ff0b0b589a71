"""FLOPs: the formula against torch's FLOP counter on a real module (meta device), and the crossing length."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.flop_counter import FlopCounterMode

from infralens.transformer import (
    MultiHeadAttention,
    attention_crossover,
    attention_flops,
    count_attention_flops,
)


@pytest.mark.parametrize(
    ("dim", "heads", "kv_heads", "head_dim"), [(4096, 32, None, None), (4096, 32, 8, None), (96, 4, 2, 40)]
)
@pytest.mark.parametrize("seq_len", [1, 100, 3000])
def test_formula_equals_the_counter(dim, heads, kv_heads, head_dim, seq_len):
    with torch.device("meta"):
        attn = MultiHeadAttention(dim, heads, kv_heads=kv_heads, head_dim=head_dim)
        x = torch.empty(2, seq_len, dim)
    measured = count_attention_flops(attn, x)
    formula = attention_flops(batch=2, seq_len=seq_len, dim=dim, heads=heads, kv_heads=kv_heads, head_dim=head_dim)
    assert measured == formula
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        attn(x)
    assert formula.total == counter.get_total_flops()  # the two parts add up to torch's whole count


@pytest.mark.parametrize(("dim", "heads", "kv_heads"), [(4096, 32, None), (4096, 32, 8), (2048, 16, 1), (64, 4, 2)])
def test_crossover_is_where_the_two_are_equal(dim, heads, kv_heads):
    s = attention_crossover(dim=dim, heads=heads, kv_heads=kv_heads)
    assert s == int(s)
    f = attention_flops(batch=1, seq_len=int(s), dim=dim, heads=heads, kv_heads=kv_heads)
    assert f.projections == f.attention
    below = attention_flops(batch=1, seq_len=int(s) - 1, dim=dim, heads=heads, kv_heads=kv_heads)
    assert below.projections > below.attention


def test_the_counter_sees_zero_flops_in_sdpa_fused_cpu_kernel():
    q = torch.randn(1, 2, 16, 8)
    with FlopCounterMode(display=False) as fused:
        F.scaled_dot_product_attention(q, q, q)
    with (
        torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH),
        FlopCounterMode(display=False) as math_path,
    ):
        F.scaled_dot_product_attention(q, q, q)
    assert fused.get_total_flops() == 0
    assert math_path.get_total_flops() == 4 * 2 * 16 * 16 * 8


def test_errors():
    with pytest.raises(ValueError, match=r"seq_len must be >= 1, e.g. seq_len=4096; got 0"):
        attention_flops(batch=1, seq_len=0, dim=64, heads=4)
    with pytest.raises(ValueError, match=r"heads=128 exceeds dim=64: give head_dim, e.g. head_dim=128"):
        attention_crossover(dim=64, heads=128)
