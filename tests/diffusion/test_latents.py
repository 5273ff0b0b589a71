"""Latent shapes and FLUX packing. Released-model facts are also cross-checked
against the real VAE classes in tests/upstream (tox -e upstream)."""

import pytest
import torch

from infralens.diffusion import LATENT_FAMILIES, flux_pack, flux_unpack, get_family, latent_frames, latent_shape

# Independent facts about the released VAEs: (channels, spatial factor, temporal factor).
RELEASED = {
    "sd": (4, 8, None),
    "sdxl": (4, 8, None),
    "sd3": (16, 8, None),
    "flux": (16, 8, None),
    "wan2.1": (16, 8, 4),
    "wan2.2": (48, 16, 4),
    "hunyuanvideo": (16, 8, 4),
    "cogvideox": (16, 8, 4),
    "ltxvideo": (128, 32, 8),
}


def test_every_family_of_the_api_is_there():
    assert set(LATENT_FAMILIES) == set(RELEASED)


@pytest.mark.parametrize("name", RELEASED)
def test_family_specs(name):
    fam = LATENT_FAMILIES[name]
    assert (fam.channels, fam.spatial_factor, fam.temporal_factor) == RELEASED[name]
    assert fam.is_video == (RELEASED[name][2] is not None)


@pytest.mark.parametrize(
    ("family", "kwargs", "shape"),
    [
        ("sd", dict(height=512, width=512), (1, 4, 64, 64)),
        ("sdxl", dict(height=1024, width=768, batch=2), (2, 4, 128, 96)),
        ("sd3", dict(height=1024, width=1024), (1, 16, 128, 128)),
        ("flux", dict(height=1024, width=1024), (1, 16, 128, 128)),
        ("wan2.1", dict(height=480, width=832, frames=81), (1, 16, 21, 60, 104)),
        ("wan2.1", dict(height=720, width=1280, frames=1), (1, 16, 1, 90, 160)),
        ("wan2.2", dict(height=704, width=1280, frames=121), (1, 48, 31, 44, 80)),
        ("hunyuanvideo", dict(height=720, width=1280, frames=129), (1, 16, 33, 90, 160)),
        ("cogvideox", dict(height=480, width=720, frames=49, batch=3), (3, 16, 13, 60, 90)),
        ("ltxvideo", dict(height=512, width=704, frames=121), (1, 128, 16, 16, 22)),
    ],
)
def test_known_shapes(family, kwargs, shape):
    assert latent_shape(family, **kwargs) == shape


def test_latent_frames():
    assert [latent_frames("wan2.1", f) for f in (1, 5, 9, 81)] == [1, 2, 3, 21]
    assert [latent_frames("ltxvideo", f) for f in (1, 9, 121)] == [1, 2, 16]
    assert [latent_frames("cogvideox", f) for f in (1, 9, 49, 81)] == [1, 3, 13, 21]


def expect(words, call, *args, **kwargs):
    with pytest.raises(ValueError) as err:
        call(*args, **kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_unknown_family():
    expect(["family", "'wan2.1'", "'wan2.5'"], latent_shape, "wan2.5", height=480, width=832, frames=81)
    expect(["family", "'sd'"], get_family, None)


def test_invalid_frames_name_the_nearest_valid_counts():
    expect(["frames=80", "1 + 4k", "77 or 81"], latent_shape, "wan2.1", height=480, width=832, frames=80)
    expect(["frames=2", "1 + 4k", "1 or 5"], latent_shape, "wan2.1", height=480, width=832, frames=2)
    expect(["frames=100", "1 + 8k", "97 or 105"], latent_shape, "ltxvideo", height=512, width=512, frames=100)
    expect(["frames=13", "in pairs", "1 + 8k", "9 or 17"], latent_shape, "cogvideox", height=480, width=720, frames=13)
    expect(["frames", ">= 1"], latent_shape, "wan2.1", height=480, width=832, frames=0)


def test_frames_for_an_image_family():
    expect(
        ["frames=16", "'sdxl' is an image family", "omit frames", "'wan2.1'"],
        latent_shape,
        "sdxl",
        height=1024,
        width=1024,
        frames=16,
    )


def test_video_family_needs_frames():
    expect(["frames is required", "'cogvideox'", "frames=81"], latent_shape, "cogvideox", height=480, width=720)


def test_sizes_not_divisible():
    expect(["height=500", "multiple of 8", "'sd'", "496 or 504"], latent_shape, "sd", height=500, width=512)
    expect(["width=1000", "multiple of 32", "992 or 1024"], latent_shape, "ltxvideo", height=512, width=1000, frames=9)
    expect(["height=4", "multiple of 8", "8"], latent_shape, "sd", height=4, width=512)


@pytest.mark.parametrize(
    "kwargs", [dict(height=0, width=8), dict(height=8.0, width=8), dict(height=8, width=8, batch=0)]
)
def test_non_positive_or_non_integer_sizes(kwargs):
    with pytest.raises(ValueError, match="must be"):
        latent_shape("sd", **kwargs)


def test_flux_pack_order_against_explicit_loops():
    B, C, H, W = 2, 3, 4, 6
    z = torch.arange(B * C * H * W, dtype=torch.float32).reshape(B, C, H, W)
    tokens = flux_pack(z)
    assert tokens.shape == (B, (H // 2) * (W // 2), 4 * C)
    for b in range(B):
        for y in range(H // 2):
            for x in range(W // 2):
                for c in range(C):
                    for i in range(2):
                        for j in range(2):
                            assert tokens[b, y * (W // 2) + x, 4 * c + 2 * i + j] == z[b, c, 2 * y + i, 2 * x + j]


def test_flux_unpack_inverts_pack():
    z = torch.randn(2, 16, 64, 96)
    assert torch.equal(flux_unpack(flux_pack(z), height=512, width=768), z)


def test_flux_errors():
    expect(["latents", "4 axes"], flux_pack, torch.zeros(1, 16, 8))
    expect(["even H' and W'", "H'=5"], flux_pack, torch.zeros(1, 16, 5, 8))
    expect(["height=520", "multiple of 16", "512 or 528"], flux_unpack, torch.zeros(1, 4, 64), 520, 512)
    expect(["tokens", "N=4", "4 x 4 = 16"], flux_unpack, torch.zeros(1, 4, 64), 64, 64)
    expect(["tokens", "(B, N, 4C)"], flux_unpack, torch.zeros(1, 16, 63), 64, 64)


def test_messages_name_valid_examples():
    expect(["height=512; got 8.5"], latent_shape, "sd", height=8.5, width=512)
    expect(["frames=81; got 0"], latent_shape, "wan2.1", height=480, width=832, frames=0)
    expect(["frames=161; got 0"], latent_shape, "ltxvideo", height=512, width=512, frames=0)
    expect(["batch=1; got 0"], latent_shape, "sd", height=512, width=512, batch=0)
    expect(["H'=5, W'=9, e.g. H'=6, W'=10"], flux_pack, torch.zeros(1, 16, 5, 9))
    expect(["height=1024; got 0"], flux_unpack, torch.zeros(1, 4, 64), 0, 64)


def test_pixel_multiple_is_vae_factor_times_patch():
    from infralens.diffusion import get_family, pixel_multiple

    for name in ("wan2.1", "wan2.2", "flux"):
        fam = get_family(name)
        assert pixel_multiple(name) == fam.spatial_factor * fam.patch[1]
    assert pixel_multiple("wan2.2") == 2 * pixel_multiple("wan2.1")  # the Wan 2.2 VAE halves each side again
    with pytest.raises(ValueError, match="family must be one of"):
        pixel_multiple("wan3")
