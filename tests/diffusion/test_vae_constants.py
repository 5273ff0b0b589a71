"""VAE scaling constants with provenance, the compression ratio, and Lab 05's starter output."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from infralens.diffusion import (
    LATENT_FAMILIES,
    LATENT_SCALING,
    VAE_CONSTANTS,
    compression_ratio,
    denormalize_latents,
    get_vae_constants,
    normalize_latents,
)

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffuser/lab-05-vae-latent-space/vae_latent_shapes.py"


def test_families_and_single_source_of_values():
    assert list(VAE_CONSTANTS) == ["sd", "sdxl", "sd3", "flux", "wan2.1"]
    for name, c in VAE_CONSTANTS.items():
        assert c.family == name and name in LATENT_FAMILIES
        if name in LATENT_SCALING:  # the values are the library's records, not copies
            assert c.scaling is LATENT_SCALING[name]


def test_values():
    got = {name: (c.scaling.scaling_factor, c.scaling.shift_factor) for name, c in VAE_CONSTANTS.items()}
    assert got == {
        "sd": (0.18215, None),
        "sdxl": (0.13025, None),
        "sd3": (1.5305, 0.0609),
        "flux": (0.3611, 0.1159),
        "wan2.1": (None, None),
    }
    wan = VAE_CONSTANTS["wan2.1"].scaling
    assert len(wan.latents_mean) == len(wan.latents_std) == LATENT_FAMILIES["wan2.1"].channels


def test_provenance_fields_agree():
    for c in VAE_CONSTANTS.values():
        assert (c.diffusers_source is None) == (c.in_wheel_as == "absent")
        assert c.in_wheel_as in {"default", "docstring", "absent"}
        assert c.released_config.endswith("vae/config.json")
        for line in (c.encode_line, c.decode_line) + ((c.diffusers_source,) if c.diffusers_source else ()):
            assert re.fullmatch(r"[\w/]+\.py:\d+", line), line
        assert c.encode_line.startswith("pipelines/") and c.decode_line.startswith("pipelines/")


def test_sd3_scaling_round_trip():
    sd3 = get_vae_constants("sd3").scaling
    z = torch.randn(2, 16, 8, 8)
    latents = normalize_latents(z, sd3)
    assert torch.allclose(latents, (z - 0.0609) * 1.5305, atol=1e-6)
    assert torch.allclose(denormalize_latents(latents, sd3), z, atol=1e-5)


@pytest.mark.parametrize("bad", ["sd2", None, 3])
def test_unknown_family(bad):
    with pytest.raises(ValueError) as info:
        get_vae_constants(bad)
    assert str(info.value) == (
        f"family must be one of 'sd', 'sdxl', 'sd3', 'flux', 'wan2.1', e.g. family='sd'; got {bad!r}"
    )


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
@pytest.mark.parametrize(("height", "width"), [(512, 512), (1024, 768), (64, 8)])
def test_image_ratio_is_three_s_squared_over_c(family, height, width):
    fam = LATENT_FAMILIES[family]
    r = compression_ratio(family, height=height, width=width)
    assert r == 3 * fam.spatial_factor**2 / fam.channels
    assert r == (3 * height * width) / (fam.channels * (height // fam.spatial_factor) * (width // fam.spatial_factor))


def test_video_ratio_counts_frames():
    # Wan 2.1: 81 frames -> 1 + 80 / 4 = 21 latent frames, 8x in space, 16 channels
    r = compression_ratio("wan2.1", height=480, width=832, frames=81)
    assert r == pytest.approx(3 * 81 * 480 * 832 / (16 * 21 * 60 * 104))
    assert compression_ratio("wan2.2", height=704, width=1280, frames=121) == pytest.approx(
        3 * 121 * 704 * 1280 / (48 * 31 * 44 * 80)
    )


def test_ratio_errors_come_from_latent_shape():
    with pytest.raises(ValueError, match=r"height=100 is not a multiple of 8.*nearest valid: 96 or 104"):
        compression_ratio("sd", height=100, width=64)
    with pytest.raises(ValueError, match=r"frames is required for the video family 'wan2.1', e.g. frames=81"):
        compression_ratio("wan2.1", height=480, width=832)


def test_starter_trace(starter):
    out = starter(STARTER)
    for name, shape in (("image", (1, 3, 128, 128)), ("z", (1, 4, 16, 16)), ("decoded", (1, 3, 128, 128))):
        assert re.search(rf"^\s+{name}\s+{re.escape(str(shape))}", out, re.M), name
    assert "latent_shape('sd', 128, 128) = (1, 4, 16, 16)" in out
    assert "undoing the constants returns z: True" in out
    assert re.search(r"^\s+sd3\s+scaling 1.5305, shift 0.0609\s+absent\s+released config only$", out, re.M)
    sd_row = r"^\s+sd\s+scaling 0.18215, shift None\s+default\s+models/autoencoders/autoencoder_kl.py:90"
    assert re.search(sd_row, out, re.M)
    for family, channels in (("sd", 4), ("sdxl", 4), ("sd3", 16), ("flux", 16)):
        shape = (1, channels, 1024 // 8, 1024 // 8)
        ratio = 3 * 1024 * 1024 / math.prod(shape)
        assert re.search(rf"^\s+{family}\s+{re.escape(str(shape))}\s+{ratio:g}$", out, re.M), family
    latent = int(re.search(r"latent decoded\s+([\d,]+) B", out).group(1).replace(",", ""))
    largest = int(re.search(r"largest decoder tensor\s+([\d,]+) B \((\d+)x\)", out).group(1).replace(",", ""))
    assert latent == 4 * 16 * 16 * 4  # (1, 4, 16, 16) float32
    assert largest == 16 * 128 * 128 * 4  # 16 channels upsampled to 128x128, float32
    assert f"({largest // latent}x)" in out
