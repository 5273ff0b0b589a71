"""TinyDiT: the latent contract, where each condition enters, seeding, every error; Lab 07's starter output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from infralens.nets import TinyDiT, modulate, patch_token_count, timestep_features, unpatchify

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffuser/lab-07-unet-dit-conditioning/conditioning_flow.py"


@pytest.fixture(scope="module")
def dit():
    return TinyDiT(latent_channels=4, text_dim=12, dim=16, num_heads=2, num_layers=2)


@torch.no_grad()
@pytest.mark.parametrize("shape", [(1, 4, 8, 8), (3, 4, 6, 10)])
def test_prediction_keeps_the_latent_shape_and_dtype(dit, shape):
    z = torch.randn(shape)
    out = dit(z, torch.full((shape[0],), 500.0), torch.randn(shape[0], 5, 12))
    assert out.shape == z.shape and out.dtype == z.dtype


@torch.no_grad()
def test_one_timestep_for_all_equals_one_per_sample(dit):
    z, text = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 12)
    assert torch.equal(dit(z, 300.0, text), dit(z, torch.tensor([300.0, 300.0]), text))
    assert not torch.allclose(dit(z, 300.0, text), dit(z, 900.0, text))


@torch.no_grad()
def test_forward_is_patchify_blocks_unpatchify(dit):
    z, text = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 12)
    t = torch.tensor([10.0, 700.0])
    emb = dit.time_embedding(timestep_features(t, 16))
    assert torch.allclose(dit.embed_timesteps(t, batch=2), emb)
    x = dit.tokens(z)
    assert x.shape == (2, 16, 16)  # N = (8/2) * (8/2)
    t_mod, context = dit.time_projection(emb), dit.text_embedding(text)  # (B, 6, D), (B, L, D)
    for block in dit.blocks:
        x = block(x, context, t_mod)
    shift, scale = (dit.scale_shift_table + emb[:, None]).unbind(1)
    out = dit.proj_out(modulate(dit.norm_out(x), shift, scale))
    assert torch.allclose(dit(z, t, text), unpatchify(out, 8, 8, 2), atol=1e-6)


@torch.no_grad()
def test_text_enters_only_through_cross_attention(dit):
    z, t = torch.randn(1, 4, 8, 8), 500.0
    a, b = torch.randn(1, 5, 12), torch.randn(1, 5, 12)
    assert not torch.allclose(dit(z, t, a), dit(z, t, b))
    blocks = dit.blocks
    saved = [blk.attn2.to_out.weight.clone() for blk in blocks]
    saved_bias = [blk.attn2.to_out.bias.clone() for blk in blocks]
    try:
        for blk in blocks:  # silence cross-attention: the text has no door left
            blk.attn2.to_out.weight.zero_()
            blk.attn2.to_out.bias.zero_()
        assert torch.allclose(dit(z, t, a), dit(z, t, b))
    finally:
        for blk, w, bias in zip(blocks, saved, saved_bias, strict=True):
            blk.attn2.to_out.weight.copy_(w)
            blk.attn2.to_out.bias.copy_(bias)


@torch.no_grad()
def test_padding_mask_reaches_cross_attention(dit):
    z, text = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 12)
    mask = torch.tensor([[True, True, True, False, False, False]])
    changed = text.clone()
    changed[:, 3:] = 50.0
    assert torch.allclose(
        dit(z, 1.0, text, encoder_attention_mask=mask), dit(z, 1.0, changed, encoder_attention_mask=mask), atol=1e-5
    )


def test_weights_are_seeded_and_leave_the_global_generator_alone():
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    a, b, c = TinyDiT(), TinyDiT(), TinyDiT(seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a.proj_out.weight, b.proj_out.weight)
    assert not torch.equal(a.proj_out.weight, c.proj_out.weight)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latent_channels": 0}, "latent_channels must be >= 1, e.g. latent_channels=4; got 0"),
        ({"text_dim": 0}, "text_dim must be >= 1, e.g. text_dim=32; got 0"),
        ({"dim": 0}, "dim must be >= 1, e.g. dim=64; got 0"),
        ({"num_heads": 0}, "num_heads must be >= 1, e.g. num_heads=2; got 0"),
        ({"num_layers": 0}, "num_layers must be >= 1, e.g. num_layers=2; got 0"),
        ({"patch_size": 0}, "patch_size must be >= 1, e.g. patch_size=2; got 0"),
        ({"num_heads": 3}, "num_heads must divide dim=64, e.g. num_heads=2; got 3"),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        TinyDiT(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("latents", "timesteps", "text", "message"),
    [
        (
            torch.randn(1, 3, 8, 8),
            1.0,
            torch.randn(1, 5, 12),
            "latents must be (B, 4, H, W), e.g. torch.randn(1, 4, 16, 16); got (1, 3, 8, 8)",
        ),
        (
            torch.randn(4, 8, 8),
            1.0,
            torch.randn(1, 5, 12),
            "latents must be (B, 4, H, W), e.g. torch.randn(1, 4, 16, 16); got (4, 8, 8)",
        ),
        (
            None,
            1.0,
            torch.randn(1, 5, 12),
            "latents must be (B, 4, H, W), e.g. torch.randn(1, 4, 16, 16); got NoneType",
        ),
        (
            torch.randn(1, 4, 7, 8),
            1.0,
            torch.randn(1, 5, 12),
            "latent height and width must be multiples of patch_size=2, e.g. (16, 16); got (7, 8)",
        ),
        (
            torch.randn(2, 4, 8, 8),
            1.0,
            torch.randn(1, 5, 12),
            "text must be (B, L, 12) with B = 2, e.g. torch.randn(2, 7, 12); got (1, 5, 12)",
        ),
        (
            torch.randn(1, 4, 8, 8),
            1.0,
            torch.randn(1, 5, 10),
            "text must be (B, L, 12) with B = 1, e.g. torch.randn(1, 7, 12); got (1, 5, 10)",
        ),
        (
            torch.randn(1, 4, 8, 8),
            1.0,
            "a cat",
            "text must be (B, L, 12) with B = 1, e.g. torch.randn(1, 7, 12); got str",
        ),
        (
            torch.randn(2, 4, 8, 8),
            torch.tensor([1.0, 2.0, 3.0]),
            torch.randn(2, 5, 12),
            "timesteps must be one value or one per sample, shape (2,); got (3,)",
        ),
    ],
)
def test_forward_errors(dit, latents, timesteps, text, message):
    with pytest.raises(ValueError) as info:
        dit(latents, timesteps, text)
    assert str(info.value) == message


def test_embed_timesteps_and_tokens_errors(dit):
    with pytest.raises(ValueError) as info:
        dit.embed_timesteps(1.0, batch=0)
    assert str(info.value) == "batch must be >= 1, e.g. batch=1; got 0"
    with pytest.raises(ValueError) as info:
        dit.tokens(torch.randn(1, 4, 8, 5))
    assert str(info.value) == "latent height and width must be multiples of patch_size=2, e.g. (16, 16); got (8, 5)"


def test_starter_trace(starter):
    out = starter(STARTER)
    assert re.search(r"^\s+text_encoder\s+1$", out, re.M)
    assert re.search(r"^\s+dit\s+4$", out, re.M)  # flow_match_sigmas(4): four denoiser calls
    expected = {  # B = 1, L = 24, D_text = 48, D = 64, heads = 2, latent (4, 16, 16), p = 2
        "context": (1, 24, 48),
        "tokens": (1, (16 // 2) * (16 // 2), 64),
        "q": (1, 64, 64),
        "k": (1, 24, 64),
        "probs": (1, 2, 64, 24),
        "emb": (1, 64),
        "shift": (1, 64),
        "v": (1, 4, 16, 16),
    }
    for name, shape in expected.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(str(shape))}\s", out, re.M), name
    assert "every latent token's weights sum to 1: True" in out
    for size in (512, 1024):
        n = (size // 16) ** 2
        assert f"{size}x{size}: ({size}/16) x ({size}/16) = {n:,} tokens" in out
        assert n == patch_token_count(size, size)
    assert "same prompt, same prediction: True" in out
    assert "other prompt, other prediction: True" in out
