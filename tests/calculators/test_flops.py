"""dit_flops against hand arithmetic and torch's FLOP counter on a block of the same layout."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from infralens.calculators import dit_flops, latent_tokens
from infralens.nets import DiTBlock


def test_block_by_hand_at_480p():
    f = dit_flops(height=480, width=832, frames=81)  # Wan 2.1 14B: d 5120, f 13824, 40 blocks
    N, L, d, ff = 32760, 512, 5120, 13824
    assert f.tokens == N == latent_tokens("wan2.1", height=480, width=832, frames=81).tokens
    assert f.block == 12 * N * d * d + 4 * L * d * d + 4 * N * d * ff + 4 * N * N * d + 4 * N * L * d
    assert f.attention == 40 * (4 * N * N * d + 4 * N * L * d)
    outside = 2 * N * d * 64 * 2 + 2 * L * d * (4096 + d) + 2 * d * (256 + d) + 12 * d * d
    assert f.total == 40 * f.block + outside
    assert round(f.attention_share, 3) == 0.532


def test_attention_grows_with_the_square_of_the_tokens():
    a = dit_flops(height=480, width=832, frames=81)
    b = dit_flops(height=720, width=1280, frames=81)
    r = b.tokens / a.tokens
    assert b.self_attention / a.self_attention == pytest.approx(r**2)
    assert b.mlp / a.mlp == pytest.approx(r)
    assert a.total < b.total < r**2 * a.total  # the call grows faster than N, slower than N^2
    assert b.attention_share > a.attention_share


def test_smaller_model_and_batch():
    one = dit_flops("wan2.1-t2v-1.3b", height=480, width=832, frames=81)
    two = dit_flops("wan2.1-t2v-1.3b", height=480, width=832, frames=81, batch=2)
    assert one.layers == 30
    time = 2 * 1536 * (256 + 1536) + 12 * 1536 * 1536  # embedded once for the batch
    assert two.total == 2 * one.total - time


def test_formula_equals_the_flop_counter_on_a_block_of_the_same_layout():
    """The tiny DiT block has Wan's products (self, cross to a text of width d, MLP): count them.

    On the meta device, where scaled_dot_product_attention runs as two matrix
    products the counter sees (the fused CPU kernel is not counted).
    """
    d, heads, N, L, ratio = 16, 2, 24, 5, 4
    with torch.device("meta"):
        block = DiTBlock(d, heads, mlp_ratio=ratio)
        x, text, t_mod = torch.empty(1, N, d), torch.empty(1, L, d), torch.empty(1, 6, d)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        block(x, text, t_mod)
    f = ratio * d
    assert counter.get_total_flops() == 12 * N * d * d + 4 * L * d * d + 4 * N * d * f + 4 * N * N * d + 4 * N * L * d


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(model="wan2.1-vae", height=480, width=832, frames=81), ["Wan DiT", "wan2.1-t2v-14b"]),
        (dict(model="wan2.2", height=480, width=832, frames=81), ["model must be one of"]),
        (dict(height=480, width=832, frames=80), ["frames=80"]),
        (dict(height=480, width=840, frames=81), ["width=840", "multiple of 16"]),
        (dict(height=480, width=832, frames=81, text_tokens=0), ["text_tokens", "512"]),
        (dict(height=480, width=832, frames=81, batch=0), ["batch"]),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as err:
        dit_flops(**kwargs)
    for w in words:
        assert w in str(err.value)
