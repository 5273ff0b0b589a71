"""Property tests (hypothesis) for the core formulas: they hold for every input drawn."""

import re

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infralens.diffusion import (
    LATENT_FAMILIES,
    add_noise,
    flow_euler_step,
    flow_interpolate,
    flow_target,
    latent_shape,
    predict_x0_from_eps,
    predict_x0_from_v,
    shift_sigmas,
    v_target,
)

FAST = settings(max_examples=40, deadline=None)
alpha_bars = st.floats(min_value=1e-3, max_value=1.0)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def pair(seed, shape=(2, 3, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


@FAST
@given(ab=st.floats(min_value=0.0, max_value=1.0))
def test_forward_coefficients_preserve_unit_variance(ab):
    """a^2 + b^2 = 1, so independent unit-variance x0 and eps give a unit-variance x_t."""
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    a, b = add_noise(one, zero, ab), add_noise(zero, one, ab)
    assert torch.allclose(a**2 + b**2, one, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(ab=st.floats(min_value=0.0, max_value=1.0), seed=seeds)
def test_forward_process_variance_is_one_on_samples(ab, seed):
    x0, eps = pair(seed, (200_000,))
    assert abs(add_noise(x0, eps, ab).var().item() - 1.0) < 0.02


@FAST
@given(ab=alpha_bars, seed=seeds)
def test_x0_is_recovered_from_every_prediction_target(ab, seed):
    x0, eps = pair(seed)
    x_t = add_noise(x0, eps, ab)
    assert torch.allclose(predict_x0_from_eps(x_t, eps, ab), x0, atol=1e-6)
    assert torch.allclose(predict_x0_from_v(x_t, v_target(x0, eps, ab), ab), x0, atol=1e-9)
    # and the three targets are consistent: v = sqrt(ab) eps - sqrt(1 - ab) x0
    assert torch.allclose(v_target(x0, eps, ab), ab**0.5 * eps - (1 - ab) ** 0.5 * x0, atol=1e-12)


@FAST
@given(steps=st.integers(min_value=1, max_value=60), shift=st.floats(min_value=0.2, max_value=12.0), seed=seeds)
def test_euler_on_the_exact_flow_velocity_lands_on_x0(steps, shift, seed):
    x0, eps = pair(seed)
    sigmas = shift_sigmas(torch.linspace(1, 0, steps + 1, dtype=torch.float64), shift)
    x = flow_interpolate(x0, eps, 1.0)
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        x = flow_euler_step(x, flow_target(x0, eps), s, s_next)
    assert torch.allclose(x, x0, atol=1e-9)


families = st.sampled_from(sorted(LATENT_FAMILIES))


@FAST
@given(family=families, h=st.integers(1, 160), w=st.integers(1, 160), k=st.integers(0, 40), b=st.integers(1, 4))
def test_latent_shapes_agree_with_decoded_sizes(family, h, w, k, b):
    fam = LATENT_FAMILIES[family]
    s = fam.spatial_factor
    kwargs = dict(height=h * s, width=w * s, batch=b)
    if fam.is_video:
        kwargs["frames"] = 1 + fam.frames_multiple * k
    shape = latent_shape(family, **kwargs)
    assert shape[:2] == (b, fam.channels)
    assert (shape[-2] * s, shape[-1] * s) == (h * s, w * s)  # decode multiplies back exactly
    if fam.is_video:
        assert len(shape) == 5
        assert 1 + (shape[2] - 1) * fam.temporal_factor == kwargs["frames"]
    else:
        assert len(shape) == 4


def nearest(message):
    return [int(v) for v in re.search(r"nearest valid: (\d+)(?: or (\d+))?$", message).groups() if v]


@FAST
@given(family=families, size=st.integers(1, 5000))
def test_every_invalid_size_is_rejected_naming_valid_ones(family, size):
    fam = LATENT_FAMILIES[family]
    s = fam.spatial_factor
    video = {"frames": 1} if fam.is_video else {}
    if size % s == 0:
        latent_shape(family, height=size, width=s, **video)
        return
    try:
        latent_shape(family, height=size, width=s, **video)
    except ValueError as err:
        suggestions = nearest(str(err))
    else:
        raise AssertionError(f"height={size} accepted for {family}")
    assert suggestions and all(v % s == 0 and v > 0 for v in suggestions)
    assert min(suggestions) <= size + s and all(abs(v - size) < s for v in suggestions)
    for v in suggestions:
        latent_shape(family, height=v, width=s, **video)  # the suggestion is accepted


@FAST
@given(family=st.sampled_from([n for n, f in LATENT_FAMILIES.items() if f.is_video]), frames=st.integers(1, 500))
def test_every_invalid_frame_count_is_rejected_naming_valid_ones(family, frames):
    fam = LATENT_FAMILIES[family]
    step = fam.frames_multiple
    s = fam.spatial_factor
    if (frames - 1) % step == 0:
        latent_shape(family, height=s, width=s, frames=frames)
        return
    try:
        latent_shape(family, height=s, width=s, frames=frames)
    except ValueError as err:
        suggestions = nearest(str(err))
    else:
        raise AssertionError(f"frames={frames} accepted for {family}")
    assert len(suggestions) == 2 and suggestions[0] < frames < suggestions[1]
    for v in suggestions:
        assert latent_shape(family, height=s, width=s, frames=v)[2] == 1 + (v - 1) // fam.temporal_factor
