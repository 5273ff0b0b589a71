"""TinyCausalVideoVAE: shapes, causality, chunked == one pass, errors, and the Lab 07 starter."""

import re

import pytest
import torch

from infralens.nets import CausalConv3d, TinyCausalVideoVAE, channel_rms_norm


@pytest.fixture(scope="module")
def vae():
    return TinyCausalVideoVAE()


def video(b=1, f=5, h=16, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, f, h, w, generator=g) * 2 - 1


@pytest.mark.parametrize(("f", "h", "w"), [(1, 8, 8), (5, 16, 24), (9, 16, 8), (13, 8, 16)])
def test_shapes(vae, f, h, w):
    z = vae.encode(video(2, f, h, w))
    assert z.shape == (2, 16, 1 + (f - 1) // 4, h // 8, w // 8)
    out = vae.decode(z)
    assert out.shape == (2, 3, f, h, w)
    assert out.min() >= -1 and out.max() <= 1  # clamped like Wan's decoder


def test_latent_channels_and_factors():
    vae = TinyCausalVideoVAE(latent_channels=4, width=4)
    assert vae.encode(video(1, 9, 16, 16)).shape == (1, 4, 3, 2, 2)
    assert (vae.spatial_factor, vae.temporal_factor) == (8, 4)


@pytest.mark.parametrize("f", [1, 5, 9, 13])
def test_chunked_equals_one_pass(vae, f):
    x = video(1, f, 16, 16, seed=f)
    z = vae.encode(x)
    assert torch.allclose(z, vae.encode(x, chunked=False), atol=1e-6)
    assert torch.allclose(vae.decode(z), vae.decode(z, chunked=False), atol=1e-6)


def test_chunked_equals_one_pass_to_float64_rounding():
    vae = TinyCausalVideoVAE().double()
    x = video(1, 9, 16, 16).double()
    diff = (vae.encode(x) - vae.encode(x, chunked=False)).abs().max().item()
    assert diff < 1e-12  # the float32 differences are rounding, not an approximation


def test_latent_frame_j_reads_frames_up_to_4j(vae):
    x = video(1, 13, 16, 16)
    z = vae.encode(x)
    for first_changed in (1, 5, 9):
        y = x.clone()
        y[:, :, first_changed:] = 0.0
        zy = vae.encode(y)
        kept = 1 + (first_changed - 1) // 4  # latent frames that read only frames < first_changed
        assert torch.equal(z[:, :, :kept], zy[:, :, :kept])
        assert not torch.allclose(z[:, :, kept], zy[:, :, kept])


def test_decoder_is_causal(vae):
    z = vae.encode(video(1, 9, 16, 16))
    z2 = z.clone()
    z2[:, :, 2] += 1.0
    a, b = vae.decode(z), vae.decode(z2)
    assert torch.equal(a[:, :, :5], b[:, :, :5])  # frames 0..4 come from latent frames 0 and 1
    assert not torch.equal(a[:, :, 5:], b[:, :, 5:])


def test_causal_conv_cache_carries_the_tail():
    conv = CausalConv3d(2, 3, (3, 1, 1))
    x = torch.randn(1, 2, 6, 1, 1)
    cache = {}
    parts = [conv(x[:, :, :1], cache), conv(x[:, :, 1:6], cache)]
    assert cache[conv].shape[2] == 2  # k_t - 1 frames
    assert torch.allclose(torch.cat(parts, 2), conv(x), atol=1e-6)
    down = CausalConv3d(2, 2, (2, 1, 1), stride=(2, 1, 1))
    cache = {}
    assert down(x[:, :, :1], cache).shape[2] == 1
    assert cache[down].shape[2] == 0  # stride == kernel: nothing to carry
    # an explicit reference: output frame i of a (3,1,1) conv is w0 x[i-2] + w1 x[i-1] + w2 x[i] + b
    ref_x = torch.cat([torch.zeros(1, 2, 2, 1, 1), x], 2)
    w = conv.weight[:, :, :, 0, 0]  # (out, in, 3)
    ref = torch.stack(
        [torch.einsum("oik,ik->o", w, ref_x[0, :, i : i + 3, 0, 0]) + conv.bias for i in range(6)], 1
    )  # (out, F)
    assert torch.allclose(conv(x)[0, :, :, 0, 0], ref, atol=1e-6)


def test_channel_rms_norm_is_per_position():
    x = torch.randn(1, 4, 3, 2, 2)
    y = channel_rms_norm(x)
    ref = x / torch.sqrt((x**2).mean(1, keepdim=True) + 1e-6)
    assert torch.allclose(y, ref, atol=1e-6)
    x2 = x.clone()
    x2[:, :, 2] *= 5
    assert torch.equal(channel_rms_norm(x2)[:, :, :2], y[:, :, :2])


def test_seed_fixes_the_weights():
    a, b, c = TinyCausalVideoVAE(seed=0), TinyCausalVideoVAE(seed=0), TinyCausalVideoVAE(seed=1)
    x = video(1, 5, 8, 8)
    assert torch.equal(a.encode(x), b.encode(x))
    assert not torch.equal(a.encode(x), c.encode(x))


def test_forward_is_a_round_trip(vae):
    x = video(1, 5, 8, 8)
    assert torch.equal(vae(x), vae.decode(vae.encode(x)))


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (torch.rand(1, 3, 16, 16), ["video must be (B, 3, F, H, W)", "got (1, 3, 16, 16)"]),
        (torch.rand(1, 4, 5, 16, 16), ["video must be (B, 3, F, H, W)", "got (1, 4, 5, 16, 16)"]),
        ("frames", ["video must be (B, 3, F, H, W)", "got str"]),
        (torch.zeros(1, 3, 5, 16, 16, dtype=torch.uint8), ["floating point", "torch.float32", "torch.uint8"]),
        (torch.rand(1, 3, 0, 16, 16), ["frames must be >= 1", "frames=9", "got 0"]),
        (torch.rand(1, 3, 6, 16, 16), ["frames=6 is not 1 + 4k", "frame 0 alone", "nearest valid: 5 or 9"]),
        (torch.rand(1, 3, 5, 20, 16), ["height=20 is not a multiple of 8", "nearest valid: 16 or 24"]),
        (torch.rand(1, 3, 5, 16, 4), ["width=4 is not a multiple of 8", "nearest valid: 8"]),
    ],
)
def test_encode_errors(vae, bad, words):
    with pytest.raises(ValueError) as err:
        vae.encode(bad)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_decode_and_constructor_errors(vae):
    with pytest.raises(
        ValueError, match=r"latents must be \(B, C, F', h, w\) with C = latent_channels = 16.*got \(1, 4"
    ):
        vae.decode(torch.randn(1, 4, 2, 2, 2))
    with pytest.raises(ValueError, match=r"latents must be \(B, C, F', h, w\).* got \(1, 16, 2, 2\)$"):
        vae.decode(torch.randn(1, 16, 2, 2))
    with pytest.raises(ValueError, match=r"latent_channels must be >= 1, e.g. latent_channels=16; got 0"):
        TinyCausalVideoVAE(latent_channels=0)
    with pytest.raises(ValueError, match=r"width must be a whole number >= 1, e.g. width=8; got 2.5"):
        TinyCausalVideoVAE(width=2.5)


def test_lab_07_starter_output(starter):
    out = starter("diffsynth/lab-07-vae-encode-decode/vae_encode_decode.py")
    assert re.search(r"video\s+\(1, 3, 9, 64, 96\)", out)
    assert re.search(r"latent z\s+\(1, 16, 3, 8, 12\)", out)  # 1 + 8/4 frames, 64/8 x 96/8
    assert re.search(r"decoded\s+\(1, 3, 9, 64, 96\)", out)
    assert "encoder chunks (frames): [(0, 1), (1, 5), (5, 9)]" in out
    assert float(re.search(r"max \|difference\| = (\S+)", out).group(1)) < 1e-6
    assert "normalise then denormalise returns z: True" in out
    lo, hi = map(float, re.search(r"per-channel\s+min (\S+)\s+max (\S+)", out).groups())
    assert 0.95 < lo <= hi < 1.05
    lo1, hi1 = map(float, re.search(r"one factor\s+min (\S+)\s+max (\S+)", out).groups())
    assert hi1 - lo1 > 0.3  # one factor leaves channels uneven
    # tiles of 4 x 6 cells every 2 x 3 on an 8 x 12 latent: rows 0, 2, 4 and columns 0, 3, 6
    assert "Tiled decode: 9 tiles of (4, 6) cells, 2.25 x area" in out
    assert 0.01 < float(re.search(r"tiled vs one pass: max \|difference\| = (\S+)", out).group(1)) < 2
    rows = dict(
        (name, (int(f.replace(",", "")), int(a.replace(",", ""))))
        for name, f, a in re.findall(
            r"^\s+(one pass|tiled)\s+FLOPs\s+([\d,]+)\s+largest activation\s+([\d,]+) B", out, re.M
        )
    )
    assert rows["tiled"][0] * 4 == rows["one pass"][0] * 9  # every tile is a quarter of the latent: 9/4
    width, bytes_ = 8, 4  # the last conv's input (B, width, frames, H, W) in float32 is the largest
    assert rows["one pass"][1] == width * 64 * 96 * bytes_ * 4  # four frames (one latent frame) at a time
    assert rows["tiled"][1] * 4 == rows["one pass"][1]  # a tile holds a quarter of the pixels
