"""dit_flops: each term by hand, the attention term shared with attention_cost, and how the share grows with N.

The whole count is compared with torch's FLOP counter on diffusers' own WanTransformer3DModel in
tests/upstream/test_calculators_upstream.py.
"""

import pytest

from infralens.calculators import attention_cost, dit_flops, latent_tokens
from infralens.families import get_model


def test_attention_terms_are_attention_cost_times_layers():
    f = dit_flops("wan2.1-t2v-14b", height=480, width=832, frames=81)
    cfg = get_model("wan2.1-t2v-14b").config
    per_layer = attention_cost(tokens=f.tokens, heads=cfg["num_heads"], head_dim=cfg["head_dim"]).flops
    assert f.layers == cfg["num_layers"] and f.self_attention == per_layer  # per block
    assert f.cross_attention == 4 * f.tokens * 512 * 5120
    assert f.attention == f.layers * (per_layer + f.cross_attention)


def test_one_block_by_hand():
    """Two requests differ only in N: the difference is the N-dependent terms, counted here by hand."""
    cfg = get_model("wan2.1-t2v-1.3b").config
    D, F, n, L = 1536, 8960, 30, 512
    a = dit_flops("wan2.1-t2v-1.3b", height=480, width=832, frames=81)
    b = dit_flops("wan2.1-t2v-1.3b", height=480, width=832, frames=85)  # one more latent frame
    dN = b.tokens - a.tokens
    assert dN == 30 * 52
    linear_per_token = n * (2 * 4 * D * D + 2 * 2 * D * D + 2 * 2 * D * F) + 2 * D * 64 + 2 * D * 64
    assert (b.total - b.attention) - (a.total - a.attention) == dN * linear_per_token
    assert cfg["in_dim"] * 4 == 64  # 16 channels x (1 x 2 x 2) cells per patch
    assert b.layers * (b.cross_attention - a.cross_attention) == n * 4 * dN * L * D


def test_share_grows_with_resolution_and_batch_scales_the_per_sample_work():
    lo = dit_flops(height=480, width=832, frames=81)
    hi = dit_flops(height=720, width=1280, frames=81)
    assert (
        lo.model == "wan2.1-t2v-14b" and hi.tokens == latent_tokens("wan2.1", height=720, width=1280, frames=81).tokens
    )
    assert 0.5 < lo.attention_share < hi.attention_share < 0.75
    two = dit_flops(height=480, width=832, frames=81, batch=2)
    assert two.attention == 2 * lo.attention and 2 * lo.total > two.total > 1.99 * lo.total  # timestep: once


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(model="umt5-xxl"), ["Wan DiT", "wan2.1-t2v-14b", "'umt5-xxl'"]),
        (dict(model="wan2.5"), ["model must be one of"]),
        (dict(frames=80), ["frames=80", "77 or 81"]),
        (dict(text_tokens=0), ["text_tokens", ">= 1"]),
        (dict(batch=0), ["batch", ">= 1"]),
    ],
)
def test_errors(kwargs, words):
    args = dict(height=480, width=832, frames=81) | kwargs
    with pytest.raises(ValueError) as err:
        dit_flops(**args)
    assert all(w in str(err.value) for w in words), str(err.value)
