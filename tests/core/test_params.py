"""Layer parameter counts against the same layers built in torch (an independent count)."""

import pytest
import torch

from infralens.core import attention_params


def projections(d, heads, kv_heads, head_dim, bias):
    q, kv = heads * head_dim, kv_heads * head_dim
    shapes = [(d, q), (d, kv), (d, kv), (q, d)]  # Q, K, V, output
    return torch.nn.ModuleList([torch.nn.Linear(i, o, bias=bias) for i, o in shapes])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    ("d", "heads", "kv_heads", "head_dim"),
    [
        (64, 8, 8, 8),  # heads x head_dim = d
        (64, 8, 2, 16),  # grouped KV heads, and heads x head_dim = 128 != d (Gemma-style wide heads)
        (96, 4, 4, 8),  # heads x head_dim = 32 < d
    ],
)
def test_attention_params_counts_the_torch_projections(d, heads, kv_heads, head_dim, bias):
    layers = projections(d, heads, kv_heads, head_dim, bias)
    expected = sum(p.numel() for p in layers.parameters())
    assert attention_params(d, heads=heads, kv_heads=kv_heads, head_dim=head_dim, bias=bias) == expected
