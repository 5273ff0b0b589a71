"""RoPE: rotations checked as complex multiplication, the two layouts related by a permutation, relative positions."""

import math

import pytest
import torch

from infralens.transformer import (
    MultiHeadAttention,
    apply_rope,
    interleaved_rows_to_half,
    interleaved_to_half,
    rope_angles,
    rope_inv_freq,
    rope_scaled_inv_freq,
)


def test_inv_freq_by_hand():
    for d, base in ((8, 10000.0), (128, 500000.0), (64, 10000.0)):
        expected = torch.tensor([base ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float32)
        assert torch.equal(rope_inv_freq(d, base), expected)


def complex_rotation(x, positions, base, layout):
    """Independent referent: pairs as complex numbers times e^{i m omega}, as Meta's Llama code writes it."""
    d = x.shape[-1]
    theta = positions[..., None].double() * torch.tensor([base ** (-2 * i / d) for i in range(d // 2)]).double()
    if positions.ndim == 2:
        theta = theta[:, None]
    rot = torch.polar(torch.ones_like(theta), theta)
    xd = x.double()
    if layout == "interleaved":
        z = torch.view_as_complex(xd.reshape(*x.shape[:-1], d // 2, 2).contiguous()) * rot
        return torch.view_as_real(z).flatten(-2)
    z = torch.complex(xd[..., : d // 2], xd[..., d // 2 :]) * rot
    return torch.cat([z.real, z.imag], dim=-1)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_apply_rope_is_a_complex_rotation(layout, per_sample):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 16, generator=g)  # (B, H, S, Dh)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5], [7, 8, 9, 100, 101, 102]]) if per_sample else torch.arange(6) + 40
    out = apply_rope(x, positions, base=10000.0, layout=layout)
    assert torch.allclose(out.double(), complex_rotation(x, positions, 10000.0, layout), atol=1e-4)


def test_layouts_differ_by_a_channel_permutation():
    x = torch.randn(1, 2, 5, 8)
    perm = interleaved_to_half(8)
    p = torch.arange(5)
    assert torch.allclose(apply_rope(x, p, layout="interleaved")[..., perm], apply_rope(x[..., perm], p), atol=1e-6)
    assert not torch.allclose(apply_rope(x, p, layout="interleaved"), apply_rope(x, p), atol=1e-2)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_scores_depend_only_on_the_offset(layout):
    q, k = torch.randn(2, 1, 1, 1, 32, dtype=torch.float64).unbind(0)

    def score(m, n):
        qm = apply_rope(q, torch.tensor([m]), layout=layout)
        kn = apply_rope(k, torch.tensor([n]), layout=layout)
        return (qm * kn).sum().item()

    for m, n in ((5, 2), (9, 9), (3, 7)):
        ref = score(m, n)
        assert all(math.isclose(score(m + t, n + t), ref, abs_tol=1e-9) for t in (1, 17, 500))
    assert not math.isclose(score(5, 2), score(5, 3), abs_tol=1e-3)


def test_a_checkpoint_moves_between_layouts_by_permuting_q_and_k_rows():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    inter = MultiHeadAttention(32, 4, kv_heads=2, rope_base=10000.0, rope_layout="interleaved").double()
    half = MultiHeadAttention(32, 4, kv_heads=2, rope_base=10000.0, rope_layout="half").double()
    half.load_state_dict(inter.state_dict())
    assert not torch.allclose(half(x), inter(x), atol=1e-3)  # same weights, other layout: wrong
    with torch.no_grad():
        for name in ("q_proj", "k_proj"):
            w = getattr(half, name).weight
            w.copy_(interleaved_rows_to_half(w, 8))
    assert torch.allclose(half(x), inter(x), atol=1e-12)


def test_dtype_and_norm_are_kept():
    x = torch.randn(1, 1, 4, 8, dtype=torch.bfloat16)
    y = apply_rope(x, torch.arange(4))
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    assert torch.allclose(y.float().norm(dim=-1), x.float().norm(dim=-1), rtol=1e-2)


def test_scalings():
    base = rope_inv_freq(64)
    assert torch.allclose(rope_scaled_inv_freq(64, factor=4), base / 4)
    ntk = rope_scaled_inv_freq(64, factor=4, method="ntk") / base
    assert ntk[0].item() == 1.0 and math.isclose(ntk[-1].item(), 0.25, rel_tol=1e-5)
    assert torch.all(ntk[1:] < ntk[:-1])  # slower pairs are stretched more
    assert torch.equal(rope_scaled_inv_freq(64, factor=1, method="ntk"), base)


def test_angles():
    a = rope_angles(torch.tensor([[0, 3]]), 4, base=100.0)
    assert a.shape == (1, 2, 2) and torch.allclose(a[0, 1], torch.tensor([3.0, 0.3]))


def test_errors():
    x = torch.zeros(1, 2, 3, 8)
    with pytest.raises(ValueError, match=r"head_dim must be even \(channels are rotated in pairs\), e.g. head_dim=8"):
        rope_inv_freq(7)
    with pytest.raises(ValueError, match=r"dtype must be torch.float32 or torch.float64.*got torch.bfloat16"):
        rope_inv_freq(8, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"base must be a number > 1, e.g. base=10000.0; got 1"):
        rope_inv_freq(8, base=1)
    with pytest.raises(ValueError, match=r"layout must be one of half, interleaved.*got 'pairs'"):
        apply_rope(x, torch.arange(3), layout="pairs")
    with pytest.raises(
        ValueError, match=r"positions must have shape \(S,\) = \(3,\) or \(B, S\) = \(1, 3\).*got \(4,\)"
    ):
        apply_rope(x, torch.arange(4))
    with pytest.raises(ValueError, match=r"positions must be an integer tensor"):
        apply_rope(x, torch.arange(3.0))
    with pytest.raises(ValueError, match=r"x must have 4 axes \(B, H, S, Dh\)"):
        apply_rope(x[0], torch.arange(3))
    with pytest.raises(ValueError, match=r"factor must be a number >= 1.*got 0.5"):
        rope_scaled_inv_freq(8, factor=0.5)
    with pytest.raises(ValueError, match=r"weight must be \(H \* head_dim, D\) with head_dim=8.*got \(12, 3\)"):
        interleaved_rows_to_half(torch.zeros(12, 3), 8)
    with pytest.raises(ValueError, match=r"method must be one of linear, ntk.*got 'yarn'"):
        rope_scaled_inv_freq(8, factor=2, method="yarn")


def test_float64_angles_use_float64_frequencies():
    # at position 100000 a float32 frequency is off by ~1e-8 relative: a whole 1e-3 radian of angle
    positions = torch.tensor([1, 100_000])
    got = rope_angles(positions, 8, dtype=torch.float64)
    exact = torch.tensor([[m * 10000.0 ** (-i / 8) for i in (0, 2, 4, 6)] for m in (1, 100_000)], dtype=torch.float64)
    assert torch.allclose(got, exact, rtol=1e-15, atol=0)
    assert not torch.allclose(rope_angles(positions, 8).double(), exact, rtol=1e-12, atol=0)  # float32's are not
