"""The forward process and its targets against the formulas, computed independently."""

import math

import pytest
import torch

from infralens.diffusion import add_noise, predict_x0_from_eps, predict_x0_from_v, v_target


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, 5, 6, generator=g), torch.randn(3, 4, 5, 6, generator=g)


def per_sample_mix(a_coef, b_coef, a, b, abs_):
    """Sample i of a_coef(ab_i) * a + b_coef(ab_i) * b, with the coefficients from Python floats."""
    return torch.stack([a_coef(ab) * a[i] + b_coef(ab) * b[i] for i, ab in enumerate(abs_)])


def test_add_noise_scalar(pair):
    x0, eps = pair
    expected = math.sqrt(0.3) * x0 + math.sqrt(0.7) * eps
    assert torch.allclose(add_noise(x0, eps, 0.3), expected, atol=1e-6)


def test_add_noise_per_sample(pair):
    x0, eps = pair
    abs_ = [0.99, 0.5, 0.01]
    expected = per_sample_mix(math.sqrt, lambda ab: math.sqrt(1 - ab), x0, eps, abs_)
    assert torch.allclose(add_noise(x0, eps, torch.tensor(abs_)), expected, atol=1e-6)


def test_add_noise_endpoints(pair):
    x0, eps = pair
    assert torch.equal(add_noise(x0, eps, 1.0), x0)
    assert torch.equal(add_noise(x0, eps, 0.0), eps)


def test_add_noise_preserves_unit_variance():
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(400_000, generator=g), torch.randn(400_000, generator=g)
    assert add_noise(x0, eps, 0.37).var().item() == pytest.approx(1.0, abs=0.01)


def test_v_target(pair):
    x0, eps = pair
    abs_ = [0.9, 0.4, 0.05]
    expected = per_sample_mix(math.sqrt, lambda ab: -math.sqrt(1 - ab), eps, x0, abs_)
    assert torch.allclose(v_target(x0, eps, torch.tensor(abs_)), expected, atol=1e-6)


@pytest.mark.parametrize("ab", [0.999, 0.5, 0.02])
def test_x0_recovered_from_eps_and_from_v(pair, ab):
    x0, eps = pair
    x_t = add_noise(x0.double(), eps.double(), ab)
    assert torch.allclose(predict_x0_from_eps(x_t, eps.double(), ab), x0.double(), atol=1e-10)
    assert torch.allclose(predict_x0_from_v(x_t, v_target(x0.double(), eps.double(), ab), ab), x0.double(), atol=1e-10)


def test_predict_x0_from_eps_formula(pair):
    x_t, eps = pair
    expected = (x_t - math.sqrt(1 - 0.6) * eps) / math.sqrt(0.6)
    assert torch.allclose(predict_x0_from_eps(x_t, eps, 0.6), expected, atol=1e-6)


def test_predict_x0_from_v_formula(pair):
    x_t, v = pair
    expected = math.sqrt(0.6) * x_t - math.sqrt(1 - 0.6) * v
    assert torch.allclose(predict_x0_from_v(x_t, v, 0.6), expected, atol=1e-6)


@pytest.mark.parametrize("fn", [add_noise, v_target, predict_x0_from_eps, predict_x0_from_v])
def test_low_precision_input_gets_float32_coefficients_and_keeps_its_dtype(pair, fn):
    a, b = (t.to(torch.bfloat16) for t in pair)
    ab = 0.9999  # rounds to 1.0 in bfloat16
    out = fn(a, b, ab)
    assert out.dtype == torch.bfloat16
    sa, sb = math.sqrt(ab), math.sqrt(1 - ab)
    # the formula as (coefficient of the first tensor, coefficient of the second), exactly
    ca, cb = {
        add_noise: (sa, sb),
        v_target: (-sb, sa),  # v_target(x0, noise): sqrt(ab) * noise - sqrt(1 - ab) * x0
        predict_x0_from_eps: (1 / sa, -sb / sa),
        predict_x0_from_v: (sa, -sb),
    }[fn]
    exact = ca * a.double() + cb * b.double()
    size = abs(ca) * a.double().abs() + abs(cb) * b.double().abs()
    # two bf16 roundings (unit roundoff 2**-8 each) and nothing else: no coefficient was rounded to bf16
    assert ((out.double() - exact).abs() <= 2**-7 * size).all()


def test_bfloat16_coefficients_would_drop_the_noise(pair):
    """The failure the float32 rule prevents: in bf16, 1 - 0.9999 is 0."""
    x0, eps = (t.to(torch.bfloat16) for t in pair)
    ab = torch.tensor(0.9999, dtype=torch.bfloat16)
    assert torch.equal(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, x0)
    assert not torch.equal(add_noise(x0, eps, 0.9999), x0)


def test_float64_stays_float64(pair):
    x0, eps = (t.double() for t in pair)
    assert add_noise(x0, eps, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)).dtype == torch.float64


def test_zero_d_tensor_alpha_bar(pair):
    x0, eps = pair
    assert torch.equal(add_noise(x0, eps, torch.tensor(0.25)), add_noise(x0, eps, 0.25))


@pytest.mark.parametrize(
    ("alpha_bar", "words"),
    [
        (1.2, ["alpha_bar_t", "[0.0, 1.0]", "alpha_bar_t=0.5", "1.2"]),
        (-0.1, ["alpha_bar_t", "[0.0, 1.0]"]),
        (float("nan"), ["alpha_bar_t", "[0.0, 1.0]"]),
        (torch.tensor([0.5, 0.5]), ["alpha_bar_t", "2 values", "3 samples", "(3,)"]),
        (torch.ones(3, 1), ["alpha_bar_t", "(B,) = (3,)"]),
        ("0.5", ["alpha_bar_t", "number or a tensor"]),
        (True, ["alpha_bar_t", "number or a tensor"]),
    ],
)
def test_alpha_bar_errors(pair, alpha_bar, words):
    x0, eps = pair
    with pytest.raises(ValueError) as err:
        add_noise(x0, eps, alpha_bar)
    for word in words:
        assert word in str(err.value)


def test_shape_mismatch_error(pair):
    x0, _ = pair
    with pytest.raises(ValueError) as err:
        add_noise(x0, torch.randn(3, 4, 5), 0.5)
    msg = str(err.value)
    assert "noise" in msg and "(3, 4, 5, 6)" in msg and "torch.randn_like(x0)" in msg


def test_non_tensor_error():
    with pytest.raises(ValueError, match=r"x0 must be a torch\.Tensor"):
        add_noise([1.0], torch.zeros(1), 0.5)


def test_integer_latent_error():
    with pytest.raises(ValueError, match="floating-point"):
        add_noise(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.int64), 0.5)


def test_x0_from_eps_at_zero_alpha_bar_is_refused(pair):
    x_t, eps = pair
    with pytest.raises(ValueError, match=r"alpha_bar_t must be > 0.*predict_x0_from_v"):
        predict_x0_from_eps(x_t, eps, torch.tensor([0.5, 0.0, 0.5]))
