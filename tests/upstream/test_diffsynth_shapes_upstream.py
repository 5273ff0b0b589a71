"""What DiffSynth-Studio does with requests that the latent rules reject (Lab 03's note).

InfraLens refuses sizes and frame counts that a family's VAE cannot represent;
DiffSynth-Studio's pipelines round them up instead. These tests pin that
difference down on the installed version, so the page's note cannot go stale.
"""

from __future__ import annotations

import types

import pytest

from infralens.diffusion import latent_shape

from ._diffsynth import load_method, package_dir

pytestmark = pytest.mark.upstream


@pytest.fixture(scope="module")
def check_resize():
    return load_method("diffusion/base_pipeline.py", "BasePipeline", "check_resize_height_width")


def wan_pipeline_stub():
    # WanVideoPipeline's factors (pipelines/wan_video.py): 16 x 16 pixels, frames = 1 + 4k
    return types.SimpleNamespace(
        height_division_factor=16, width_division_factor=16, time_division_factor=4, time_division_remainder=1
    )


def test_wan_factors_are_what_the_pipeline_declares():
    source = (package_dir() / "pipelines" / "wan_video.py").read_text()
    assert "height_division_factor=16, width_division_factor=16, time_division_factor=4, time_division_remainder=1" in (
        source
    )
    assert "length = (num_frames - 1) // 4 + 1" in source  # latent frames of the initial noise


@pytest.mark.parametrize(
    ("request_", "rounded"),
    [((480, 832, 81), (480, 832, 81)), ((470, 830, 80), (480, 832, 81)), ((481, 833, 82), (496, 848, 85))],
)
def test_diffsynth_rounds_up_where_infralens_refuses(check_resize, request_, rounded):
    height, width, frames = request_
    assert check_resize(wan_pipeline_stub(), height, width, frames, verbose=0) == rounded
    if request_ != rounded:
        with pytest.raises(ValueError):
            latent_shape("wan2.1", height=height, width=width, frames=frames)
    # what DiffSynth then builds agrees with latent_shape on the rounded request
    h, w, f = rounded
    assert latent_shape("wan2.1", height=h, width=w, frames=f)[2] == (f - 1) // 4 + 1
