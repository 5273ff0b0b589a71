"""VAE tiling: exact with a halo, approximate when blended (diffusers' scheme and DiffSynth's linear ramps)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from infralens.memory import (
    blended_tiled_decode,
    diffsynth_tile_coverage,
    diffsynth_tiled_decode,
    diffsynth_tiles,
    peak_tensor_bytes,
    tiled_decode,
)
from infralens.nets import TinyCausalVideoVAE, TinyConvDecoder


def measured_radius(decoder: TinyConvDecoder, size: int = 8) -> int:
    """Largest distance (latent cells) from a pixel's own cell to a cell whose gradient is non-zero."""
    z = torch.randn(1, 4, size, size, dtype=torch.float64, requires_grad=True)
    out = decoder.double()(z)
    s, row = decoder.scale, (size // 2) * decoder.scale
    radius = 0
    for x in range(size * s):
        (grad,) = torch.autograd.grad(out[0, 0, row, x], z, retain_graph=True)
        cols = grad.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
        rows = grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
        home_col, home_row = x // s, row // s
        radius = max(radius, home_col - cols.min().item(), cols.max().item() - home_col)
        radius = max(radius, home_row - rows.min().item(), rows.max().item() - home_row)
    return radius


@pytest.mark.parametrize("upsamples", [1, 2, 3])
def test_receptive_radius_matches_autograd(upsamples):
    torch.manual_seed(upsamples)
    dec = TinyConvDecoder(width=4, upsamples=upsamples)
    assert dec.receptive_radius == measured_radius(dec)


@pytest.mark.parametrize(("tile", "H", "W"), [(8, 20, 28), (5, 13, 9), (16, 16, 16), (32, 12, 20)])
def test_halo_of_the_receptive_radius_is_exact(tile, H, W):
    torch.manual_seed(0)
    dec = TinyConvDecoder(width=8)
    z = torch.randn(2, 4, H, W)
    with torch.no_grad():
        full = dec(z)
        assert torch.allclose(tiled_decode(dec, z, tile=tile, halo=dec.receptive_radius), full, atol=1e-6)
        assert torch.allclose(tiled_decode(dec, z, tile=tile, halo=dec.receptive_radius + 3), full, atol=1e-6)


def test_a_smaller_halo_is_wrong_near_the_seams_only():
    torch.manual_seed(0)
    dec = TinyConvDecoder(width=8)
    z = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        full, short = dec(z), tiled_decode(dec, z, tile=8, halo=dec.receptive_radius - 1)
    err = (short - full).abs().amax(dim=(0, 1))  # (sH, sW)
    s = dec.scale
    assert err.max() > 1e-3
    seam = 8 * s  # pixel index of the seam between the two tiles along each axis
    far = torch.ones_like(err, dtype=torch.bool)
    far[seam - 2 * s : seam + 2 * s, :] = False
    far[:, seam - 2 * s : seam + 2 * s] = False
    assert err[far].max() < 1e-6  # away from the seams the tiles are exact


@pytest.mark.parametrize(
    ("scale", "tile", "overlap_factor"),
    [
        (2, 8, 0.25),
        (1, 8, 0.25),  # a decoder that does not upsample (s = 1) is a decoder too
        (2, 2, 0.5),  # stride 1: every latent cell starts a tile
    ],
)
def test_blending_is_exact_when_tiles_agree(scale, tile, overlap_factor):
    """With no receptive field beyond the own cell, overlapping tiles agree and blending changes nothing."""
    z = torch.randn(1, 3, 21, 30)

    def pointwise(t):  # nearest upsampling times 3: radius 0
        return 3 * t.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)

    out = blended_tiled_decode(pointwise, z, tile=tile, overlap_factor=overlap_factor)
    assert torch.allclose(out, pointwise(z), atol=1e-6)


@pytest.mark.parametrize("overlap_factor", [0.25, 0.5])
def test_blending_a_conv_decoder_is_approximate(overlap_factor):
    torch.manual_seed(0)
    dec = TinyConvDecoder(width=8)
    z = torch.randn(1, 4, 24, 40)
    with torch.no_grad():
        full, blended = dec(z), blended_tiled_decode(dec, z, tile=8, overlap_factor=overlap_factor)
    assert blended.shape == full.shape
    assert not torch.allclose(blended, full, atol=1e-4)


def test_tiling_lowers_the_measured_peak_as_computed():
    torch.manual_seed(0)
    w, B, H, W = 8, 1, 32, 48
    dec = TinyConvDecoder(width=w)
    z = torch.randn(B, 4, H, W)
    r, s, t = dec.receptive_radius, dec.scale, 8

    def act(h, w_):  # one float32 feature map of the decoder at that resolution
        return B * w * h * w_ * 4

    with torch.no_grad():
        full = peak_tensor_bytes(lambda: dec(z))
        tiled = peak_tensor_bytes(lambda: tiled_decode(dec, z, tile=t, halo=r))
    # whole image: the half-resolution map stays alive while the last stage holds two full-resolution maps
    assert full == act(2 * H, 2 * W) + 2 * act(s * H, s * W)
    # tiled: the output buffer, the decoded patch of an interior tile and its maps at (t + 2r) cells
    p = t + 2 * r
    out_bytes = B * 3 * s * H * s * W * 4
    assert tiled == out_bytes + act(2 * p, 2 * p) + 2 * act(s * p, s * p) + B * 3 * s * p * s * p * 4
    assert tiled < full / 3


def test_errors():
    dec = TinyConvDecoder(width=4)
    z = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"z must have 4 axes \(B, C, H, W\), e.g. \(1, 4, 64, 64\); got \(4, 8, 8\)"):
        tiled_decode(dec, z[0], tile=4, halo=2)
    with pytest.raises(ValueError, match=r"z must have 4 axes .* got ndarray"):
        blended_tiled_decode(dec, z.numpy(), tile=4)
    with pytest.raises(ValueError, match=r"tile must be >= 1, e.g. tile=32; got 0"):
        tiled_decode(dec, z, tile=0, halo=2)
    with pytest.raises(ValueError, match=r"halo must be a whole number >= 0 .* e.g. halo=2; got -1"):
        tiled_decode(dec, z, tile=4, halo=-1)
    with pytest.raises(ValueError, match=r"overlap_factor must lie in \(0, 1\), e.g. overlap_factor=0.25; got 1"):
        blended_tiled_decode(dec, z, tile=4, overlap_factor=1)
    with pytest.raises(
        ValueError, match=r"tile \* \(1 - overlap_factor\) must be >= 1 latent cell, e.g. tile=64; got tile=1"
    ):
        blended_tiled_decode(dec, z, tile=1, overlap_factor=0.25)
    with pytest.raises(
        ValueError, match=r"decoder must upsample by a whole factor s: .* got \(1, 4, 5, 5\) -> \(1, 4, 3, 3\)"
    ):
        tiled_decode(lambda t: t[..., ::2, ::2], z, tile=4, halo=1)
    with pytest.raises(ValueError, match=r"upsamples must be >= 1, e.g. upsamples=2; got 0"):
        TinyConvDecoder(upsamples=0)
    with pytest.raises(ValueError, match=r"width must be a whole number >= 1, e.g. width=32; got 2.0"):
        TinyConvDecoder(width=2.0)


@pytest.mark.parametrize(
    ("H", "W", "count"),
    [(60, 104, 9), (90, 160, 30), (30, 52, 1), (31, 52, 2), (8, 12, 9)],
)
def test_diffsynth_tiles_cover_the_latent(H, W, count):
    size = (4, 6) if (H, W) == (8, 12) else (30, 52)
    stride = (2, 3) if (H, W) == (8, 12) else (15, 26)
    boxes = diffsynth_tiles(H, W, tile_size=size, tile_stride=stride)
    assert len(boxes) == count
    covered = torch.zeros(H, W)
    for top, bottom, left, right in boxes:
        assert 0 <= top < bottom <= H and 0 <= left < right <= W
        assert bottom - top <= size[0] and right - left <= size[1]
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1  # every cell is decoded at least once
    assert diffsynth_tile_coverage(H, W, tile_size=size, tile_stride=stride) == pytest.approx(covered.mean().item())


def test_diffsynth_blend_weights_sum_to_one_and_reach_the_edges():
    z = torch.rand(2, 3, 2, 8, 12) * 2 - 1  # two samples: the blend works per sample

    def nearest(t):
        return t.repeat_interleave(8, -2).repeat_interleave(8, -1)

    out = diffsynth_tiled_decode(nearest, z, tile_size=(4, 6), tile_stride=(2, 3))
    assert torch.allclose(out, nearest(z))
    ones = diffsynth_tiled_decode(lambda t: nearest(torch.ones_like(t)), z, tile_size=(4, 6), tile_stride=(2, 3))
    assert torch.allclose(ones, torch.ones_like(ones))  # the ramps are normalised everywhere, edges included
    # DiffSynth returns pixels in [-1, 1]: a decoder that overshoots is clamped after the blend
    wild = diffsynth_tiled_decode(lambda t: nearest(3 * t), z, tile_size=(4, 6), tile_stride=(2, 3))
    assert torch.allclose(wild, nearest(3 * z).clamp(-1, 1)) and wild.min() == -1 and wild.max() == 1


def test_diffsynth_blend_of_a_conv_decoder_is_approximate_and_costs_the_coverage():
    vae = TinyCausalVideoVAE()
    z = vae.encode(torch.rand(1, 3, 5, 64, 96) * 2 - 1)  # (1, 16, 2, 8, 12)
    with torch.no_grad():
        tiled = diffsynth_tiled_decode(vae.decode, z, tile_size=(4, 6), tile_stride=(2, 3))
        whole = vae.decode(z)
    assert tiled.shape == whole.shape
    assert not torch.allclose(tiled, whole, atol=1e-3)
    with FlopCounterMode(display=False) as a:
        vae.decode(z)
    with FlopCounterMode(display=False) as b:
        diffsynth_tiled_decode(vae.decode, z, tile_size=(4, 6), tile_stride=(2, 3))
    assert b.get_total_flops() / a.get_total_flops() == diffsynth_tile_coverage(8, 12, tile_size=(4, 6),
                                                                                tile_stride=(2, 3))  # fmt: skip


def test_diffsynth_tiling_errors():
    with pytest.raises(ValueError, match=r"tile_size must be \(height, width\) in latent cells, e.g. tile_size"):
        diffsynth_tiles(60, 104, tile_size=30)
    with pytest.raises(ValueError, match=r"tile_stride\[1\] must be"):
        diffsynth_tiles(60, 104, tile_stride=(15, 0))
    with pytest.raises(ValueError, match=r"height must be"):
        diffsynth_tiles(0, 104)
    with pytest.raises(ValueError, match=r"z must have 5 axes \(B, C, F', H', W'\).*got \(1, 16, 60, 104\)"):
        diffsynth_tiled_decode(lambda t: t, torch.zeros(1, 16, 60, 104))
    with pytest.raises(ValueError, match=r"tile_stride must not exceed tile_size=\(4, 6\).*got \(5, 3\)"):
        diffsynth_tiled_decode(lambda t: t, torch.zeros(1, 16, 1, 8, 12), tile_size=(4, 6), tile_stride=(5, 3))
