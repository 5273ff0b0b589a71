"""latent_tokens against hand arithmetic: pixels per token and latent frames, written out independently."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infralens.calculators import PATCH, latent_tokens
from infralens.diffusion import LATENT_FAMILIES, latent_shape

# family: (pixels per latent cell, pixel frames per latent frame or None, latent cells per token side)
BY_HAND = {
    "sd": (8, None, 1),
    "sdxl": (8, None, 2),
    "sd3": (8, None, 2),
    "flux": (8, None, 2),
    "wan2.1": (8, 4, 2),
    "wan2.2": (16, 4, 2),
    "hunyuanvideo": (8, 4, 2),
    "cogvideox": (8, 4, 2),
    "ltxvideo": (32, 8, 1),
}
FRAME_STEP = {"wan2.1": 4, "wan2.2": 4, "hunyuanvideo": 4, "cogvideox": 8, "ltxvideo": 8}


def test_every_family_has_a_patch_and_none_patches_time():
    assert set(PATCH) == set(LATENT_FAMILIES) == set(BY_HAND)
    assert all(p[0] == 1 and p[1] == p[2] == BY_HAND[f][2] for f, p in PATCH.items())


@pytest.mark.parametrize(
    ("family", "kwargs", "tokens"),
    [
        ("wan2.1", dict(height=480, width=832, frames=81), 21 * 30 * 52),
        ("wan2.1", dict(height=720, width=1280, frames=81), 21 * 45 * 80),
        ("wan2.2", dict(height=704, width=1280, frames=121), 31 * 22 * 40),
        ("hunyuanvideo", dict(height=720, width=1280, frames=129), 33 * 45 * 80),
        ("cogvideox", dict(height=480, width=720, frames=49), 13 * 30 * 45),
        ("ltxvideo", dict(height=512, width=768, frames=121), 16 * 16 * 24),
        ("flux", dict(height=1024, width=768), 64 * 48),
        ("sd3", dict(height=1024, width=1024), 64 * 64),
        ("sd", dict(height=512, width=512), 64 * 64),
        ("sdxl", dict(height=1024, width=1024), 64 * 64),
    ],
)
def test_tokens_of_common_requests(family, kwargs, tokens):
    t = latent_tokens(family, **kwargs)
    assert t.tokens == tokens
    assert t.latent == latent_shape(family, **kwargs)  # the latent comes from latent_shape, not a copy of it


@settings(max_examples=60, deadline=None)
@given(family=st.sampled_from(sorted(BY_HAND)), kh=st.integers(1, 40), kw=st.integers(1, 40), kf=st.integers(0, 30))
def test_tokens_are_the_product_of_the_grid(family, kh, kw, kf):
    cell, tf, p = BY_HAND[family]
    height, width = kh * cell * p, kw * cell * p  # whole patches
    frames = 1 + FRAME_STEP[family] * kf if tf else None
    t = latent_tokens(family, height=height, width=width, frames=frames)
    latent_frames = 1 + (frames - 1) // tf if tf else 1
    assert t.grid == (latent_frames, kh, kw)
    assert t.tokens == latent_frames * kh * kw


def test_tokens_are_per_sample():
    t = latent_tokens("wan2.1", height=480, width=832, frames=81, batch=4)
    assert t.latent[0] == 4 and t.tokens == 21 * 30 * 52


def test_what_is_counted_is_said():
    assert latent_tokens("sd", height=512, width=512).counted.startswith("UNet")
    assert "1/2 of the latent" in latent_tokens("sdxl", height=1024, width=1024).counted
    assert "1x2x2" in latent_tokens("wan2.1", height=480, width=832, frames=81).counted
    assert "2x2" in latent_tokens("flux", height=1024, width=1024).counted


@pytest.mark.parametrize(
    ("family", "kwargs", "words"),
    [
        ("flux", dict(height=520, width=512), ["height=520", "2 cells per patch", "multiple of 16", "512 or 528"]),
        # one rule for the request: a suggestion passes the VAE's 8 and the patch's 2 (488 would not)
        ("wan2.1", dict(height=481, width=832, frames=81), ["height=481", "multiple of 16", "480 or 496"]),
        ("wan2.2", dict(height=720, width=1280, frames=81), ["height=720", "multiple of 32", "704 or 736"]),
        ("sdxl", dict(height=1024, width=1032), ["width=1032", "multiple of 16", "1024 or 1040"]),
        ("flux", dict(height=8, width=16), ["height=8", "multiple of 16", "nearest valid: 16"]),
        # latent_shape's own checks come through unchanged
        ("wan2.1", dict(height=480, width=832, frames=80), ["frames=80", "77 or 81"]),
        ("wan2.1", dict(height=480, width=832), ["frames is required", "frames=81"]),
        ("sd", dict(height=512, width=512, frames=5), ["frames=5", "image family"]),
        ("wan2.5", dict(height=480, width=832, frames=81), ["family", "'wan2.1'"]),
        ("sd", dict(height=0, width=512), ["height", ">= 1"]),
        ("sd", dict(height=512, width=512, batch=0), ["batch", ">= 1"]),
    ],
)
def test_errors_name_the_argument_and_a_valid_value(family, kwargs, words):
    with pytest.raises(ValueError) as err:
        latent_tokens(family, **kwargs)
    for word in words:
        assert word in str(err.value)
    assert "nearest valid: 0" not in str(err.value)


def test_each_axis_is_divided_by_its_own_patch(monkeypatch):
    # every released family patches height and width alike and never patches time, so a formula that
    # mixed the axes up would pass the tests above; a family with a (2, 2, 4) patch tells them apart
    import dataclasses

    import infralens.calculators.tokens as tokens_module

    uneven = dataclasses.replace(LATENT_FAMILIES["wan2.1"], patch=(2, 2, 4))
    monkeypatch.setattr(tokens_module, "get_family", lambda family: uneven)
    t = latent_tokens("wan2.1", height=720, width=1280, frames=85)  # latent (22, 90, 160)
    assert t.latent[2:] == (22, 90, 160)
    assert t.grid == (22 // 2, 90 // 2, 160 // 4) and t.tokens == 11 * 45 * 40
    # the height rule is 8 pixels x 2 cells, the width rule 8 x 4: 720 = 45 x 16 but not a multiple of 32
    with pytest.raises(ValueError, match="width=720 is not a multiple of 32"):
        latent_tokens("wan2.1", height=1280, width=720, frames=85)
