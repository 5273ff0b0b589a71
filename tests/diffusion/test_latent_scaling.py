"""Latent normalisation: one scaling factor and per-channel statistics, against their formulas."""

import pytest
import torch

from infralens.diffusion import LATENT_FAMILIES, LATENT_SCALING, denormalize_latents, normalize_latents
from infralens.families import LatentScaling


def test_every_family_is_a_latent_family_with_matching_channels():
    for name, spec in LATENT_SCALING.items():
        assert name in LATENT_FAMILIES
        if spec.per_channel:
            assert len(spec.latents_mean) == len(spec.latents_std) == LATENT_FAMILIES[name].channels


def test_one_scaling_factor():
    z = torch.randn(2, 4, 8, 8)
    assert torch.allclose(normalize_latents(z, "sd"), z * 0.18215, atol=1e-6)
    assert torch.allclose(normalize_latents(z, "sdxl"), z * 0.13025, atol=1e-6)
    z16 = torch.randn(2, 16, 8, 8)
    assert torch.allclose(normalize_latents(z16, "flux"), (z16 - 0.1159) * 0.3611, atol=1e-6)
    assert torch.allclose(denormalize_latents(z16, "flux"), z16 / 0.3611 + 0.1159, atol=1e-5)


def test_per_channel_statistics_element_by_element():
    spec = LATENT_SCALING["wan2.1"]
    z = torch.randn(1, 16, 3, 2, 2)
    got = normalize_latents(z, "wan2.1")
    for c in range(16):
        expected = (z[:, c] - spec.latents_mean[c]) / spec.latents_std[c]
        assert torch.allclose(got[:, c], expected, atol=1e-6)
    # what diffusers' WanPipeline does before decoding: latents / (1 / std) + mean
    mean = torch.tensor(spec.latents_mean).view(1, 16, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(spec.latents_std).view(1, 16, 1, 1, 1)
    assert torch.allclose(denormalize_latents(got, "wan2.1"), got / inv_std + mean, atol=1e-5)


def test_round_trip_dtype_and_custom_spec():
    spec = LatentScaling(latents_mean=(1.0, -2.0), latents_std=(2.0, 0.5))
    z = torch.randn(3, 2, 4, 4, dtype=torch.bfloat16)
    n = normalize_latents(z, spec)
    assert n.dtype == torch.bfloat16
    assert torch.allclose(n[:, 1].float(), (z[:, 1].float() + 2.0) / 0.5, atol=0.05)
    z64 = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    assert torch.allclose(denormalize_latents(normalize_latents(z64, spec), spec), z64, atol=1e-12)


def test_measured_statistics_make_each_channel_standard():
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.5, 2.0, 4.0]).view(1, 3, 1, 1)
    z = torch.randn(64, 3, 8, 8, generator=g) * scale + torch.tensor([1.0, 0.0, -3.0]).view(1, 3, 1, 1)
    per = z.transpose(0, 1).flatten(1)  # (C, N)
    spec = LatentScaling(latents_mean=tuple(per.mean(1).tolist()), latents_std=tuple(per.std(1).tolist()))
    n = normalize_latents(z, spec).transpose(0, 1).flatten(1)
    assert torch.allclose(n.std(1), torch.ones(3), atol=1e-5)
    one = normalize_latents(z, LatentScaling(scaling_factor=1 / z.std().item())).transpose(0, 1).flatten(1)
    assert one.std(1).max() / one.std(1).min() > 7  # one factor keeps the 8x spread between channels


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (
            lambda: normalize_latents(torch.zeros(1, 4, 8, 8), "ltxvideo"),
            ["family must be one of", "'wan2.1'", "got 'ltxvideo'"],
        ),
        (lambda: normalize_latents(torch.zeros(1, 4, 8, 8), "wan2.1"), ["4 channels", "have 16", "'wan2.1'"]),
        (lambda: denormalize_latents(torch.zeros(4, 8), "sd"), ["latents must be (B, C, ...)", "got (4, 8)"]),
        (lambda: normalize_latents(torch.zeros(1, 4, 8, 8, dtype=torch.long), "sd"), ["floating-point", "torch.int64"]),
        (lambda: LatentScaling(), ["either scaling_factor", "not neither"]),
        (lambda: LatentScaling(scaling_factor=0.2, latents_mean=(0.0,), latents_std=(1.0,)), ["not both"]),
        (lambda: LatentScaling(scaling_factor=0.0), ["scaling_factor must be > 0", "0.18215", "got 0.0"]),
        (
            lambda: LatentScaling(latents_mean=(0.0, 1.0), latents_std=(1.0,)),
            ["latents_std must have one value", "(2)"],
        ),
        (lambda: LatentScaling(latents_mean=(0.0,)), ["latents_std must have one value", "got None"]),
        (lambda: LatentScaling(latents_mean=(0.0,), latents_std=(-1.0,)), ["latents_std must be > 0", "got (-1.0,)"]),
    ],
)
def test_errors(call, words):
    with pytest.raises(ValueError) as err:
        call()
    assert all(w in str(err.value) for w in words), str(err.value)


def test_float64_latents_get_the_statistics_in_float64():
    # the statistics are kept as Python floats and applied at the latent's own precision: a float64
    # latent is normalised with the float64 values, not with float32 copies (1e-8 off)
    spec = LATENT_SCALING["wan2.1"]
    z = torch.randn(1, 16, 2, 2, 2, dtype=torch.float64)
    got = normalize_latents(z, "wan2.1")
    for c in (0, 5, 15):
        assert torch.equal(got[:, c], (z[:, c] - spec.latents_mean[c]) / spec.latents_std[c])
    mean32 = torch.tensor(spec.latents_mean[5]).item()  # what a float32 table would hold
    assert mean32 != spec.latents_mean[5] and not torch.equal(got[:, 5], (z[:, 5] - mean32) / spec.latents_std[5])


def test_channels_on_axis_1_with_any_number_of_trailing_axes():
    # (B, C, L): a sequence of latent vectors is normalised channel by channel like an image
    spec = LatentScaling(latents_mean=(1.0, -2.0), latents_std=(2.0, 0.5))
    z = torch.randn(3, 2, 7)
    assert torch.allclose(normalize_latents(z, spec)[:, 1], (z[:, 1] + 2.0) / 0.5)
    with pytest.raises(ValueError, match="latents must be"):
        normalize_latents(torch.randn(3, 2), spec)
