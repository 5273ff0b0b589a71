"""Flow matching and classifier-free guidance against their formulas."""

import itertools

import pytest
import torch

from infralens.diffusion import cfg_combine, flow_euler_step, flow_interpolate, flow_target, shift_sigmas


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 16, 3, 4, 4, generator=g), torch.randn(2, 16, 3, 4, 4, generator=g)


def test_flow_interpolate_per_sample(pair):
    x0, eps = pair
    out = flow_interpolate(x0, eps, torch.tensor([0.2, 0.9]))
    assert torch.allclose(out[0], 0.2 * eps[0] + 0.8 * x0[0], atol=1e-6)
    assert torch.allclose(out[1], 0.9 * eps[1] + 0.1 * x0[1], atol=1e-6)


def test_flow_interpolate_endpoints_and_dtype(pair):
    x0, eps = pair
    assert torch.equal(flow_interpolate(x0, eps, 0.0), x0)
    assert torch.equal(flow_interpolate(x0, eps, 1.0), eps)
    low = flow_interpolate(x0.bfloat16(), eps.bfloat16(), 0.3)
    assert low.dtype == torch.bfloat16
    reference = 0.3 * eps.bfloat16().double() + 0.7 * x0.bfloat16().double()
    assert torch.allclose(low.double(), reference, rtol=2**-8, atol=0)  # one bf16 rounding of the exact value


def test_flow_target(pair):
    x0, eps = pair
    assert torch.equal(flow_target(x0, eps), eps - x0)


def test_shift_sigmas_formula():
    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    for shift in (0.5, 1.0, 3.0, 5.0):
        expected = torch.tensor([shift * v / (1 + (shift - 1) * v) for v in s.tolist()], dtype=torch.float64)
        assert torch.allclose(shift_sigmas(s, shift), expected)


def test_shift_one_is_identity_and_shift_is_monotone():
    s = torch.linspace(0, 1, 101)
    assert torch.allclose(shift_sigmas(s, 1.0), s)
    shifted = shift_sigmas(s, 5.0)
    assert (shifted.diff() > 0).all() and (shifted >= s).all()


def test_euler_step_formula(pair):
    x, v = pair
    assert torch.allclose(flow_euler_step(x, v, 0.8, 0.6), x - 0.2 * v, atol=1e-6)
    mixed = flow_euler_step(x, v, 1.0, torch.tensor([0.5, 0.0]))  # one sigma, per-sample next sigmas
    assert torch.allclose(mixed[0], x[0] - 0.5 * v[0], atol=1e-6)
    assert torch.allclose(mixed[1], x[1] - 1.0 * v[1], atol=1e-6)
    per = flow_euler_step(x, v, torch.tensor([1.0, 0.5]), torch.tensor([0.75, 0.0]))
    assert torch.allclose(per[0], x[0] - 0.25 * v[0], atol=1e-6)
    assert torch.allclose(per[1], x[1] - 0.5 * v[1], atol=1e-6)


def test_euler_integration_of_the_exact_velocity_lands_on_x0(pair):
    x0, eps = pair
    sigmas = shift_sigmas(torch.linspace(1, 0, 11), 3.0)
    x = flow_interpolate(x0, eps, sigmas[0].item())
    for s, s_next in itertools.pairwise(sigmas):
        x = flow_euler_step(x, flow_target(x0, eps), s.item(), s_next.item())
    assert torch.allclose(x, x0, atol=1e-5)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda x, e: flow_interpolate(x, e, 1.5), ["sigma", "[0.0, 1.0]", "sigma=0.5"]),
        (lambda x, e: flow_interpolate(x, e, torch.tensor([0.1, 0.2, 0.3])), ["sigma", "3 values", "2 samples"]),
        (lambda x, e: flow_euler_step(x, e, 0.5, -0.1), ["sigma_next", "[0.0, 1.0]"]),
        (lambda x, e: shift_sigmas(torch.tensor([0.5]), 0.0), ["shift", "> 0", "shift=3.0"]),
        (lambda x, e: shift_sigmas(torch.tensor([1.5]), 3.0), ["sigmas", "[0, 1]"]),
        (lambda x, e: flow_target(x, e[:1]), ["noise", "shape"]),
        (lambda x, e: cfg_combine(x, e[:, :8], 7.5), ["cond", "shape of uncond"]),
        (lambda x, e: cfg_combine(x, e, "7.5"), ["scale", "scale=7.5"]),
    ],
)
def test_errors(pair, call, words):
    with pytest.raises(ValueError) as err:
        call(*pair)
    for word in words:
        assert word in str(err.value)


def test_cfg_combine(pair):
    u, c = pair
    assert torch.equal(cfg_combine(u, c, 0.0), u)
    assert torch.allclose(cfg_combine(u, c, 1.0), c, atol=1e-6)
    assert torch.allclose(cfg_combine(u, c, 5.0), 5.0 * c - 4.0 * u, atol=1e-5)


def test_euler_step_messages_name_valid_values(pair):
    x, v = pair
    with pytest.raises(ValueError, match=r"sigma must lie in \[0\.0, 1\.0\], e\.g\. sigma=1\.0; got 2\.0"):
        flow_euler_step(x, v, 2.0, 0.5)
    with pytest.raises(ValueError, match=r"sigma_next must lie in \[0\.0, 1\.0\], e\.g\. sigma_next=0\.5; got -1\.0"):
        flow_euler_step(x, v, 1.0, -1.0)
