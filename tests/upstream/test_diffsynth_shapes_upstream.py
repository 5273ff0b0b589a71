"""What DiffSynth-Studio does with requests that the latent rules reject (Lab 03's note), on its own pipeline.

InfraLens refuses sizes and frame counts that a family's VAE or the DiT's
patches cannot represent; DiffSynth-Studio's ``WanVideoPipeline`` rounds them up
instead. These tests run the real pipeline object's ``check_resize_height_width``
and noise unit, with Wan 2.1's factors and with the Wan 2.2 VAE's.
"""

from __future__ import annotations

import types

import pytest
import torch

from infralens.calculators import latent_tokens
from infralens.diffusion import latent_shape

from . import _wan_pipeline as wp

pytestmark = pytest.mark.upstream


@pytest.fixture(scope="module")
def pipe():
    return wp.wan_video().WanVideoPipeline(device="cpu", torch_dtype=torch.float32)


def test_wan_factors_and_the_noise_latent(pipe):
    """16 x 16 pixels per size step, frames 1 + 4k; the noise unit builds latent_shape's tensor."""
    assert (pipe.height_division_factor, pipe.width_division_factor) == (16, 16)
    assert (pipe.time_division_factor, pipe.time_division_remainder) == (4, 1)
    pipe.vae = types.SimpleNamespace(model=types.SimpleNamespace(z_dim=16), upsampling_factor=8)
    unit = wp.wan_video().WanVideoUnit_NoiseInitializer()
    noise = unit.process(pipe, 480, 832, 81, 0, "cpu", None, None)["noise"]
    assert tuple(noise.shape) == latent_shape("wan2.1", height=480, width=832, frames=81)


@pytest.mark.parametrize(
    ("request_", "rounded"),
    [((480, 832, 81), (480, 832, 81)), ((470, 830, 80), (480, 832, 81)), ((481, 833, 82), (496, 848, 85))],
)
def test_diffsynth_rounds_up_where_infralens_refuses(pipe, request_, rounded):
    height, width, frames = request_
    assert pipe.check_resize_height_width(height, width, frames, verbose=0) == rounded
    if request_ != rounded:
        with pytest.raises(ValueError):
            latent_shape("wan2.1", height=height, width=width, frames=frames)
    h, w, f = rounded
    assert latent_shape("wan2.1", height=h, width=w, frames=f)[2] == (f - 1) // 4 + 1


@pytest.mark.parametrize(("request_", "rounded"), [((720, 1280), (736, 1280)), ((720, 1008), (736, 1024))])
def test_the_wan22_vae_makes_diffsynth_round_720_up_to_736(request_, rounded):
    """``from_pretrained`` sets the size factor to ``2 * vae.upsampling_factor``: 32 with ``WanVideoVAE38``."""
    with torch.device("meta"):
        vae = wp.module("models.wan_video_vae").WanVideoVAE38()  # TI2V-5B's VAE, built on shapes only
    pipe = wp.wan_video().WanVideoPipeline(device="cpu", torch_dtype=torch.float32)
    pipe.height_division_factor = pipe.width_division_factor = vae.upsampling_factor * 2  # wan_video.py:177-179
    assert (vae.upsampling_factor, vae.z_dim) == (16, 48)
    assert pipe.check_resize_height_width(*request_, 121, verbose=0) == (*rounded, 121)
    with pytest.raises(ValueError, match="nearest valid: 704 or 736"):  # the book refuses, naming both choices
        latent_tokens("wan2.2", height=720, width=1280, frames=121)
