"""Wan image-to-video cross-attention in DiffSynth-Studio, run: decoupled, not one softmax over image and text.

``CrossAttention(has_image_input=True)`` splits the first 257 context rows off
as CLIP image tokens, gives them their own ``k_img``, ``v_img`` and
``norm_k_img``, runs a separate attention and adds it to the text attention
before ``o``. The DiffSynth handbook's conditioning section cites these tests.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from ._diffsynth_wan import diffsynth_module

pytestmark = pytest.mark.upstream

D, H, IMAGE_TOKENS = 32, 2, 257


def _attn(q, k, v):
    """Multi-head SDPA on (B, S, D) projections."""
    heads = lambda t: t.view(t.shape[0], t.shape[1], H, D // H).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))  # (B, H, N, D/H)
    return out.transpose(1, 2).reshape(q.shape[0], -1, D)  # (B, N, D)


@pytest.fixture(scope="module")
def cross():
    torch.manual_seed(0)
    return diffsynth_module("models.wan_video_dit").CrossAttention(D, H, has_image_input=True).eval()


def test_image_tokens_get_their_own_projections_and_softmax_added_to_the_text_attention(cross):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 10, D, generator=g)  # (B, N, D) latent tokens
    img, txt = torch.randn(1, IMAGE_TOKENS, D, generator=g), torch.randn(1, 7, D, generator=g)
    assert {n.split(".")[0] for n, _ in cross.named_parameters() if "img" in n} == {"k_img", "v_img", "norm_k_img"}
    with torch.no_grad():
        out = cross(x, torch.cat([img, txt], 1))  # model_fn puts the CLIP tokens first
        q = cross.norm_q(cross.q(x))
        text_part = _attn(q, cross.norm_k(cross.k(txt)), cross.v(txt))
        image_part = _attn(q, cross.norm_k_img(cross.k_img(img)), cross.v_img(img))
        one_softmax = _attn(
            q,
            torch.cat([cross.norm_k_img(cross.k_img(img)), cross.norm_k(cross.k(txt))], 1),
            torch.cat([cross.v_img(img), cross.v(txt)], 1),
        )
        assert torch.allclose(out, cross.o(text_part + image_part), atol=1e-5)
        assert (out - cross.o(one_softmax)).abs().max() > 0.05  # not one softmax over [image; text]
        # decoupled: the image's contribution does not depend on the text, here 50 other tokens
        txt50 = torch.randn(1, 50, D, generator=g)
        out50 = cross(x, torch.cat([img, txt50], 1))
        text50 = _attn(q, cross.norm_k(cross.k(txt50)), cross.v(txt50))
        assert torch.allclose(out50 - cross.o(text50), out - cross.o(text_part), atol=1e-5)


def test_the_split_is_a_literal_257(cross):
    """256 image tokens are not refused: the first text token is silently read as an image token."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 10, D, generator=g)
    img, txt = torch.randn(1, IMAGE_TOKENS - 1, D, generator=g), torch.randn(1, 7, D, generator=g)
    with torch.no_grad():
        out = cross(x, torch.cat([img, txt], 1))
        q = cross.norm_q(cross.q(x))
        meant = cross.o(
            _attn(q, cross.norm_k(cross.k(txt)), cross.v(txt))
            + _attn(q, cross.norm_k_img(cross.k_img(img)), cross.v_img(img))
        )
        y = torch.cat([img, txt], 1)
        read = cross.o(
            _attn(q, cross.norm_k(cross.k(y[:, 257:])), cross.v(y[:, 257:]))
            + _attn(q, cross.norm_k_img(cross.k_img(y[:, :257])), cross.v_img(y[:, :257]))
        )
    assert torch.allclose(out, read, atol=1e-5)
    assert not torch.allclose(out, meant, atol=1e-3)
