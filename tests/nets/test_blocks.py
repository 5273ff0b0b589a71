"""Conditioning pieces: patchify and token counts, timestep features, adaLN, cross-attention; every error."""

from __future__ import annotations

import math

import pytest
import torch

from infralens.diffusion import flux_pack
from infralens.nets import (
    AdaLNZero,
    CrossAttention,
    modulate,
    patch_token_count,
    patchify,
    timestep_features,
    unpatchify,
)


@pytest.mark.parametrize("p", [1, 2, 4])
def test_patchify_order_and_inverse(p):
    x = torch.randn(2, 3, 8, 12)
    tokens = patchify(x, p)
    assert tokens.shape == (2, (8 // p) * (12 // p), 3 * p * p)
    # token n = patch row n // (W/p), column n % (W/p); feature c p^2 + i p + j = x[c, row p + i, col p + j]
    for n in (0, 5, tokens.shape[1] - 1):
        row, col = divmod(n, 12 // p)
        patch = x[:, :, row * p : (row + 1) * p, col * p : (col + 1) * p]  # (B, C, p, p)
        assert torch.equal(tokens[:, n], patch.reshape(2, -1))
    assert torch.equal(unpatchify(tokens, 8, 12, p), x)


def test_patchify_is_flux_pack_for_p_2():
    x = torch.randn(1, 16, 6, 10)
    assert torch.equal(patchify(x, 2), flux_pack(x))


def test_patch_embedding_conv_is_linear_on_patches():
    x = torch.randn(2, 4, 8, 8)
    conv = torch.nn.Conv2d(4, 12, kernel_size=2, stride=2)
    tokens = conv(x).flatten(2).transpose(1, 2)  # (B, N, D)
    manual = patchify(x, 2) @ conv.weight.reshape(12, -1).T + conv.bias
    assert torch.allclose(tokens, manual, atol=1e-5)


@pytest.mark.parametrize(
    ("height", "width", "s", "p", "n"),
    [(1024, 1024, 8, 2, 4096), (512, 512, 8, 2, 1024), (1024, 768, 8, 2, 3072), (256, 256, 8, 1, 1024)],
)
def test_patch_token_count(height, width, s, p, n):
    assert patch_token_count(height, width, spatial_factor=s, patch_size=p) == n
    assert n == (height // (s * p)) * (width // (s * p))


def test_timestep_features_formula():
    t = torch.tensor([0.0, 3.0, 999.0])
    f = timestep_features(t, 8)
    assert f.shape == (3, 8) and f.dtype == torch.float32
    for b, tb in enumerate(t.tolist()):
        for i in range(4):
            omega = 10000.0 ** (-i / 4)
            assert f[b, i].item() == pytest.approx(math.cos(tb * omega), abs=1e-6)
            assert f[b, 4 + i].item() == pytest.approx(math.sin(tb * omega), abs=1e-6)


def test_modulate_formula():
    x, shift, scale = torch.randn(2, 5, 8), torch.randn(2, 8), torch.randn(2, 8)
    out = modulate(x, shift, scale)
    for b in range(2):
        for n in range(5):
            assert torch.allclose(out[b, n], x[b, n] * (1 + scale[b]) + shift[b], atol=1e-6)


def test_adaln_zero_starts_at_zero_and_orders_six_vectors():
    emb = torch.randn(3, 16)
    zero = AdaLNZero(8, cond_dim=16)
    six = zero(emb)
    assert six.shape == (3, 6, 8) and not six.any()
    ada = AdaLNZero(8, cond_dim=16, zero_init=False)
    full = ada.linear(torch.nn.functional.silu(emb))  # (B, 6D)
    for i, v in enumerate(ada(emb).unbind(1)):  # shift, scale, gate (attention), then (MLP)
        assert torch.equal(v, full[:, i * 8 : (i + 1) * 8])


def test_cross_attention_against_manual_heads():
    torch.manual_seed(0)
    attn = CrossAttention(query_dim=8, context_dim=6, heads=2)
    x, c = torch.randn(2, 5, 8), torch.randn(2, 3, 6)
    q, k, v = attn.to_q(x), attn.to_k(c), attn.to_v(c)
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * (h + 1))
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / 2.0, dim=-1)  # sqrt(4) = 2
        assert torch.allclose(attn.attention_probs(x, c)[:, h], w, atol=1e-6)
        heads.append(w @ v[..., sl])
    assert torch.allclose(attn(x, c), attn.to_out(torch.cat(heads, dim=-1)), atol=1e-5)
    assert attn(x, c).shape == x.shape


def test_cross_attention_mask_ignores_padded_text():
    torch.manual_seed(1)
    attn = CrossAttention(query_dim=8, context_dim=6, heads=2)
    x, c = torch.randn(1, 4, 8), torch.randn(1, 5, 6)
    mask = torch.tensor([[True, True, True, False, False]])
    probs = attn.attention_probs(x, c, mask)
    assert not probs[..., 3:].any()
    garbage = c.clone()
    garbage[:, 3:] = 100.0  # change only padded tokens
    assert torch.allclose(attn(x, garbage, mask), attn(x, c, mask), atol=1e-6)
    assert torch.allclose(attn(x, c, mask), attn(x, c[:, :3]), atol=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: patchify(torch.randn(4, 8, 8)),
            "latents must be (B, C, H, W), e.g. torch.randn(1, 4, 16, 16); got (4, 8, 8)",
        ),
        (lambda: patchify("x"), "latents must be (B, C, H, W), e.g. torch.randn(1, 4, 16, 16); got str"),
        (
            lambda: patchify(torch.randn(1, 4, 7, 8)),
            "latent height=7 is not a multiple of patch_size=2; nearest valid: 6 or 8",
        ),
        (
            lambda: patchify(torch.randn(1, 4, 8, 1)),
            "latent width=1 is not a multiple of patch_size=2; nearest valid: 2",
        ),
        (lambda: patchify(torch.randn(1, 4, 8, 8), 0), "patch_size must be >= 1, e.g. patch_size=2; got 0"),
        (
            lambda: unpatchify(torch.randn(1, 10, 16), 6, 8),
            "tokens must be (B, N, C * 4) with N = (6/2) * (8/2) = 12, e.g. torch.randn(1, 12, 16); got (1, 10, 16)",
        ),
        (
            lambda: unpatchify(torch.randn(1, 12, 6), 6, 8),
            "tokens must be (B, N, C * 4) with N = (6/2) * (8/2) = 12, e.g. torch.randn(1, 12, 16); got (1, 12, 6)",
        ),
        (
            lambda: unpatchify(torch.randn(1, 12, 16), 5, 8),
            "latent height=5 is not a multiple of patch_size=2; nearest valid: 4 or 6",
        ),
        (lambda: unpatchify(torch.randn(1, 12, 16), 0, 8), "height must be >= 1, e.g. height=16; got 0"),
        (
            lambda: patch_token_count(1000, 1024),
            "height=1000 is not a multiple of 16 (spatial_factor * patch_size = 8 * 2); nearest valid: 992 or 1008",
        ),
        (
            lambda: patch_token_count(1024, 8),
            "width=8 is not a multiple of 16 (spatial_factor * patch_size = 8 * 2); nearest valid: 16",
        ),
        (lambda: patch_token_count(1024, 1024, patch_size=0), "patch_size must be >= 1, e.g. patch_size=2; got 0"),
        (
            lambda: patch_token_count(1024, 1024, spatial_factor=0),
            "spatial_factor must be >= 1, e.g. spatial_factor=8; got 0",
        ),
        (lambda: patch_token_count(0, 1024), "height must be >= 1, e.g. height=1024; got 0"),
        (
            lambda: timestep_features(torch.tensor([1.0]), 7),
            "dim must be even (half cosines, half sines), e.g. dim=32; got 7",
        ),
        (lambda: timestep_features(torch.tensor([1.0]), 0), "dim must be >= 1, e.g. dim=32; got 0"),
        (
            lambda: modulate(torch.randn(2, 5, 8), torch.randn(2, 8), torch.randn(1, 8)),
            "x must be (B, N, D) and shift, scale (B, D) with the same B and D, e.g. x (2, 5, 8) and shift (2, 8); "
            "got x (2, 5, 8), shift (2, 8), scale (1, 8)",
        ),
        (
            lambda: modulate(torch.randn(2, 8), torch.randn(2, 8), torch.randn(2, 8)),
            "x must be (B, N, D) and shift, scale (B, D) with the same B and D, e.g. x (2, 5, 8) and shift (2, 8); "
            "got x (2, 8), shift (2, 8), scale (2, 8)",
        ),
        (lambda: AdaLNZero(0), "dim must be >= 1, e.g. dim=64; got 0"),
        (lambda: AdaLNZero(8, cond_dim=0), "cond_dim must be >= 1, e.g. cond_dim=64; got 0"),
        (lambda: CrossAttention(8, 6, heads=3), "heads must divide query_dim=8, e.g. heads=2; got 3"),
        (lambda: CrossAttention(0, 6), "query_dim must be >= 1, e.g. query_dim=64; got 0"),
        (lambda: CrossAttention(8, 0), "context_dim must be >= 1, e.g. context_dim=32; got 0"),
        (lambda: CrossAttention(8, 6, heads=0), "heads must be >= 1, e.g. heads=2; got 0"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


_ATTN = CrossAttention(8, 6, heads=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (torch.randn(1, 4, 8), torch.randn(3, 6)),
            "hidden_states must be (B, N, 8) and encoder_hidden_states (B, L, 6), "
            "e.g. torch.randn(1, 64, 8) and torch.randn(1, 7, 6)",
        ),
        (
            (torch.randn(1, 4, 8), torch.randn(2, 3, 6)),
            "hidden_states must be (B, N, 8) and encoder_hidden_states (B, L, 6) with the same B; "
            "got (1, 4, 8) and (2, 3, 6)",
        ),
        (
            (torch.randn(1, 4, 7), torch.randn(1, 3, 6)),
            "hidden_states must be (B, N, 8) and encoder_hidden_states (B, L, 6) with the same B; "
            "got (1, 4, 7) and (1, 3, 6)",
        ),
        (
            (torch.randn(1, 4, 8), torch.randn(1, 3, 6), torch.ones(1, 3)),
            "encoder_attention_mask must be a bool tensor (B, L) = (1, 3), True on real text tokens; "
            "got ((1, 3), torch.float32)",
        ),
        (
            (torch.randn(1, 4, 8), torch.randn(1, 3, 6), [True, True, True]),
            "encoder_attention_mask must be a bool tensor (B, L) = (1, 3), True on real text tokens; got list",
        ),
    ],
)
def test_cross_attention_errors(args, message):
    for call in (_ATTN, _ATTN.attention_probs):
        with pytest.raises(ValueError) as info:
            call(*args)
        assert str(info.value) == message


def test_qk_norm_is_rms_over_the_full_width_before_heads():
    """Wan's norm_q / norm_k: each token's query (key) divided by its RMS over all D features, times a weight."""
    torch.manual_seed(2)
    attn = CrossAttention(query_dim=8, context_dim=6, heads=2, qk_norm=True)
    with torch.no_grad():
        attn.norm_q.weight.uniform_(0.5, 1.5)
        attn.norm_k.weight.uniform_(0.5, 1.5)
    x, c = torch.randn(2, 5, 8), torch.randn(2, 3, 6)

    def rms(t, w):  # by hand, not through nn.RMSNorm
        return t / t.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * w

    q, k, v = rms(attn.to_q(x), attn.norm_q.weight), rms(attn.to_k(c), attn.norm_k.weight), attn.to_v(c)
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * (h + 1))  # the norm spans both heads; the split comes after it
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / 2.0, dim=-1)
        assert torch.allclose(attn.attention_probs(x, c)[:, h], w, atol=1e-6)
        heads.append(w @ v[..., sl])
    assert torch.allclose(attn(x, c), attn.to_out(torch.cat(heads, dim=-1)), atol=1e-5)
    plain = CrossAttention(query_dim=8, context_dim=6, heads=2)
    plain.load_state_dict({k: v for k, v in attn.state_dict().items() if "norm" not in k})
    assert not torch.allclose(plain(x, c), attn(x, c), atol=1e-3)  # the norm changes the result


def test_dit_block_normalises_queries_and_keys_in_both_attentions():
    from infralens.nets import DiTBlock, SelfAttention

    block = DiTBlock(16, 2)
    assert block.attn2.qk_norm and {"norm_q", "norm_k"} <= {n for n, _ in block.attn2.named_children()}
    assert {"norm_q", "norm_k"} <= {n for n, _ in block.attn1.named_children()}
    torch.manual_seed(3)
    attn = SelfAttention(16, 2)
    x = torch.randn(1, 6, 16)
    q, k, v = attn.to_qkv(x).chunk(3, -1)
    q, k = attn.norm_q(q), attn.norm_k(k)
    split = lambda t: t.view(1, 6, 2, 8).transpose(1, 2)  # noqa: E731
    a = torch.softmax(split(q) @ split(k).transpose(-1, -2) / 8**0.5, -1) @ split(v)
    assert torch.allclose(attn(x), attn.to_out(a.transpose(1, 2).reshape(1, 6, 16)), atol=1e-5)


def test_qk_norm_must_be_a_bool():
    with pytest.raises(ValueError, match=r"qk_norm must be True or False, e\.g\. qk_norm=True; got 'yes'"):
        CrossAttention(8, 6, qk_norm="yes")
