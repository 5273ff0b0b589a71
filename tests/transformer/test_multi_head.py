"""Attention from scratch against torch's own: nn.MultiheadAttention, SDPA (with GQA), and a decode step."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from infralens.transformer import MultiHeadAttention, apply_rope, causal_mask


@pytest.fixture
def x():
    return torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("bias", [False, True])
def test_equals_nn_multihead_attention(x, bias):
    torch.manual_seed(0)
    ours = MultiHeadAttention(32, 4, bias=bias).double()
    theirs = ours.to_torch()
    full, _ = theirs(x, x, x, need_weights=False)
    assert torch.allclose(ours(x, causal=False), full, atol=1e-12)
    hidden = torch.ones(7, 7, dtype=torch.bool).triu(1)  # nn.MultiheadAttention: True = NOT allowed
    causal, _ = theirs(x, x, x, attn_mask=hidden, need_weights=False)
    assert torch.allclose(ours(x), causal, atol=1e-12)


def test_gqa_equals_sdpa_with_enable_gqa(x):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 8, kv_heads=2, head_dim=6, rope_base=10000.0).double()
    q, k, v = attn.project(x)
    assert q.shape == (2, 8, 7, 6) and k.shape == v.shape == (2, 2, 7, 6)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # (B, H, S, Dh)
    expected = attn.o_proj(o.transpose(1, 2).reshape(2, 7, 48))
    assert torch.allclose(attn(x), expected, atol=1e-12)


def test_rope_is_applied_to_queries_and_keys_only(x):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, rope_base=500.0, rope_layout="interleaved").double()
    q, k, v = attn.project(x, torch.arange(7) + 3)
    split = lambda t: t.view(2, 7, 4, 8).transpose(1, 2)  # noqa: E731
    p = torch.arange(7) + 3
    assert torch.allclose(q, apply_rope(split(attn.q_proj(x)), p, base=500.0, layout="interleaved"))
    assert torch.allclose(k, apply_rope(split(attn.k_proj(x)), p, base=500.0, layout="interleaved"))
    assert torch.equal(v, split(attn.v_proj(x)))


def test_decode_with_cached_keys_equals_the_last_row(x):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, kv_heads=2, rope_base=10000.0).double()
    full = attn(x)  # (B, S, D)
    _, k_cache, v_cache = attn.project(x[:, :6])  # prefill: positions 0..5
    q, k, v = attn.project(x[:, 6:], torch.tensor([6]))  # one new token at position 6
    step = attn.attend(q, torch.cat([k_cache, k], 2), torch.cat([v_cache, v], 2))
    assert torch.allclose(step, full[:, 6:], atol=1e-12)


def test_additive_mask_equals_causal_flag(x):
    attn = MultiHeadAttention(32, 4).double()
    assert torch.allclose(attn(x, causal=False, mask=causal_mask(7, dtype=torch.float64)), attn(x), atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match=r"kv_heads must divide heads=8 \(each KV head serves a whole group\), one of"):
        MultiHeadAttention(64, 8, kv_heads=3)
    with pytest.raises(ValueError, match=r"dim=30 is not divisible by heads=4: give head_dim, e.g. head_dim=7"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match=r"rope_layout must be one of half, interleaved"):
        MultiHeadAttention(32, 4, rope_layout="pairs")
    with pytest.raises(ValueError, match=r"head_dim must be even, e.g. head_dim=6; got 5"):
        MultiHeadAttention(30, 6, rope_base=10000.0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, S, D\) with D = 32.*got \(2, 7, 16\)"):
        MultiHeadAttention(32, 4)(torch.zeros(2, 7, 16))
    with pytest.raises(ValueError, match=r"nn.MultiheadAttention has kv_heads == heads"):
        MultiHeadAttention(32, 4, kv_heads=2).to_torch()


def test_kv_heads_that_do_not_divide_heads_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"kv_heads must divide heads=12 .*one of \[1, 2, 3, 4, 6, 12\]; got 5"):
        MultiHeadAttention(48, 12, kv_heads=5)
