"""TinyAutoencoderKL and its posterior: shapes from the block count, the reparameterised sample, every error."""

from __future__ import annotations

import pytest
import torch

from infralens.diffusion import latent_shape
from infralens.nets import DiagonalGaussian, TinyAutoencoderKL


@pytest.mark.parametrize(("blocks", "factor"), [((8,), 1), ((8, 8), 2), ((8, 8, 8), 4), ((8, 16, 32, 32), 8)])
def test_spatial_factor_is_two_to_the_blocks_minus_one(blocks, factor):
    vae = TinyAutoencoderKL(latent_channels=3, block_out_channels=blocks)
    assert vae.spatial_factor == factor
    post = vae.encode(torch.rand(2, 3, 16, 24) * 2 - 1)
    assert post.mean.shape == post.std.shape == (2, 3, 16 // factor, 24 // factor)
    assert vae.decode(post.mode()).shape == (2, 3, 16, 24)


@pytest.mark.parametrize(("family", "channels"), [("sd", 4), ("sd3", 16)])
def test_default_blocks_give_the_family_latent_shape(family, channels):
    vae = TinyAutoencoderKL(latent_channels=channels)
    z = vae.encode(torch.rand(1, 3, 64, 96) * 2 - 1).mode()
    assert tuple(z.shape) == latent_shape(family, height=64, width=96)


def test_weights_are_seeded_and_leave_the_global_generator_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = TinyAutoencoderKL(), TinyAutoencoderKL(), TinyAutoencoderKL(seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(a.encode(x).mean, b.encode(x).mean)
    assert not torch.equal(a.encode(x).mean, c.encode(x).mean)


def test_sample_is_mean_plus_std_times_noise():
    moments = torch.randn(2, 8, 4, 4)
    post = DiagonalGaussian(moments)
    mean, logvar = moments[:, :4], moments[:, 4:]
    assert torch.equal(post.mean, mean) and torch.equal(post.mode(), mean)
    assert torch.allclose(post.std, torch.exp(0.5 * logvar), atol=1e-6)
    z = post.sample(torch.Generator().manual_seed(3))
    eps = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(z, mean + torch.exp(0.5 * logvar) * eps, atol=1e-6)
    z_again = post.sample(torch.Generator().manual_seed(3))
    assert torch.equal(z, z_again)


def test_log_variance_is_clamped():
    moments = torch.cat([torch.zeros(1, 2, 1, 1), torch.tensor([-100.0, 100.0]).view(1, 2, 1, 1)], dim=1)
    post = DiagonalGaussian(moments)
    assert post.logvar.flatten().tolist() == [-30.0, 20.0]
    assert torch.allclose(post.std.flatten(), torch.tensor([-15.0, 10.0]).exp())


def test_latent_depends_on_every_colour_of_its_pixels():
    vae = TinyAutoencoderKL()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    base = vae.encode(x).mean
    for colour in range(3):
        bumped = x.clone()
        bumped[0, colour, 12, 12] += 0.5
        moved = (vae.encode(bumped).mean - base)[0, :, 12 // 8, 12 // 8].abs()
        assert bool((moved > 0).all()), colour


def test_encode_and_decode_do_not_track_gradients():
    vae = TinyAutoencoderKL()
    x = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_()
    post = vae.encode(x)
    assert not post.mean.requires_grad
    assert not vae.decode(post.mean).requires_grad
    assert vae(x.detach()).shape == x.shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latent_channels": 0}, "latent_channels must be >= 1, e.g. latent_channels=4; got 0"),
        (
            {"block_out_channels": ()},
            "block_out_channels must be a non-empty tuple of channel counts, e.g. (8, 16, 32, 32); got ()",
        ),
        (
            {"block_out_channels": 8},
            "block_out_channels must be a non-empty tuple of channel counts, e.g. (8, 16, 32, 32); got 8",
        ),
        (
            {"block_out_channels": (8, 0)},
            "block_out_channels[i] must be >= 1, e.g. block_out_channels[i]=8; got 0",
        ),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        TinyAutoencoderKL(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(3, 16, 16), "images must be (B, 3, H, W), e.g. torch.rand(1, 3, 64, 64) * 2 - 1; got (3, 16, 16)"),
        (
            torch.rand(1, 4, 16, 16),
            "images must be (B, 3, H, W), e.g. torch.rand(1, 3, 64, 64) * 2 - 1; got (1, 4, 16, 16)",
        ),
        ([[0.0]], "images must be (B, 3, H, W), e.g. torch.rand(1, 3, 64, 64) * 2 - 1; got list"),
        (
            torch.zeros(1, 3, 16, 16, dtype=torch.uint8),
            "images must be floating point pixels in [-1, 1], e.g. torch.float32; got torch.uint8",
        ),
        (
            torch.rand(1, 3, 20, 16),
            "height=20 is not a multiple of 8, the spatial factor (2 ** (len(block_out_channels) - 1)); "
            "nearest valid: 16 or 24",
        ),
        (
            torch.rand(1, 3, 16, 4),
            "width=4 is not a multiple of 8, the spatial factor (2 ** (len(block_out_channels) - 1)); nearest valid: 8",
        ),
    ],
)
def test_encode_errors(images, message):
    with pytest.raises(ValueError) as info:
        TinyAutoencoderKL().encode(images)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("latents", "got"),
    [(torch.randn(1, 16, 2, 2), "(1, 16, 2, 2)"), (torch.randn(4, 2, 2), "(4, 2, 2)"), (1.0, "float")],
)
def test_decode_errors(latents, got):
    with pytest.raises(ValueError) as info:
        TinyAutoencoderKL().decode(latents)
    assert str(info.value) == (
        f"latents must be (B, C, h, w) with C = latent_channels = 4, e.g. torch.randn(1, 4, 8, 8); got {got}"
    )


@pytest.mark.parametrize(("moments", "got"), [(torch.zeros(1, 3, 2, 2), "(1, 3, 2, 2)"), ("x", "str")])
def test_posterior_errors(moments, got):
    with pytest.raises(ValueError) as info:
        DiagonalGaussian(moments)
    assert str(info.value) == (
        "moments must be (B, 2C, h, w), mean then log-variance on the channel axis, "
        f"e.g. torch.zeros(1, 8, 2, 2); got {got}"
    )
