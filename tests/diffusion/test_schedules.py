"""Schedules against independent computations (plain Python math, the papers' formulas)."""

import math

import pytest
import torch

from infralens.diffusion import SCHEDULES, alphas_cumprod, make_betas, rescale_zero_terminal_snr, snr


def test_linear_is_evenly_spaced_between_the_endpoints():
    betas = make_betas("linear", 11, beta_start=0.001, beta_end=0.011, dtype=torch.float64)
    expected = [0.001 + 0.001 * i for i in range(11)]
    assert torch.allclose(betas, torch.tensor(expected, dtype=torch.float64))


def test_defaults_are_diffusers_defaults():
    betas = make_betas("linear")
    assert betas.shape == (1000,) and betas.dtype == torch.float32
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_scaled_linear_squares_evenly_spaced_square_roots():
    betas = make_betas("scaled_linear", 5, beta_start=0.01, beta_end=0.09, dtype=torch.float64)
    roots = [0.1, 0.15, 0.2, 0.25, 0.3]  # sqrt(0.01) .. sqrt(0.09) in 4 equal steps
    assert torch.allclose(betas, torch.tensor([r * r for r in roots], dtype=torch.float64))


def test_cosine_matches_the_improved_ddpm_formula():
    T = 1000

    def f(u):
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    expected = [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]
    betas = make_betas("squaredcos_cap_v2", T, dtype=torch.float64)
    assert torch.allclose(betas, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    assert betas[-1].item() == 0.999  # the cap bites on the last step


def test_alphas_cumprod_is_the_running_product():
    betas = make_betas("linear", 50, dtype=torch.float64)
    running, expected = 1.0, []
    for b in betas.tolist():
        running *= 1 - b
        expected.append(running)
    assert torch.allclose(alphas_cumprod(betas), torch.tensor(expected, dtype=torch.float64), rtol=1e-12)


def test_alphas_cumprod_keeps_dtype():
    assert alphas_cumprod(make_betas("linear")).dtype == torch.float32


def test_snr():
    ab = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    assert torch.allclose(snr(ab), torch.tensor([0.25, 1.0, 9.0], dtype=torch.float64))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_zero_terminal_snr_rescaling(schedule):
    betas = make_betas(schedule, dtype=torch.float64)
    new = rescale_zero_terminal_snr(betas)
    old_r, new_r = alphas_cumprod(betas).sqrt(), alphas_cumprod(new).sqrt()
    assert new[-1].item() == 1.0 and alphas_cumprod(new)[-1].item() == 0.0
    assert new_r[0].item() == pytest.approx(old_r[0].item(), rel=1e-12)  # first step unchanged
    # the new sqrt(alpha_bar) is an affine map of the old one: (r - r_T) * r_0 / (r_0 - r_T)
    r0, rT = old_r[0], old_r[-1]
    assert torch.allclose(new_r, (old_r - rT) * r0 / (r0 - rT), atol=1e-12)


def test_zero_terminal_snr_keeps_dtype():
    assert rescale_zero_terminal_snr(make_betas("linear")).dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"schedule": "cosine"}, ["schedule", "'squaredcos_cap_v2'", "'cosine'"]),
        ({"schedule": "linear", "num_train_timesteps": 1}, ["num_train_timesteps", ">= 2", "1000"]),
        ({"schedule": "linear", "num_train_timesteps": 10.5}, ["num_train_timesteps", "whole number"]),
        ({"schedule": "linear", "beta_start": 0.03}, ["beta_start", "beta_end", "0 < beta_start <= beta_end < 1"]),
        ({"schedule": "linear", "beta_end": 1.5}, ["beta_end", "0.02"]),
        # the bounds themselves: a zero beta adds no noise at step 0, a beta of 1 erases the sample
        ({"schedule": "linear", "beta_start": 0.0}, ["beta_start", "0 < beta_start"]),
        ({"schedule": "scaled_linear", "beta_end": 1.0}, ["beta_end", "beta_end < 1"]),
        ({"schedule": "linear", "dtype": torch.int64}, ["dtype", "float32"]),
    ],
)
def test_make_betas_errors_name_argument_rule_and_valid_value(kwargs, words):
    with pytest.raises(ValueError) as err:
        make_betas(**kwargs)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    "bad",
    [torch.tensor([[0.1, 0.2]]), torch.tensor([0.1]), torch.tensor([0.1, 1.5]), torch.tensor([1, 2]), [0.1, 0.2]],
)
def test_betas_checked(bad):
    with pytest.raises(ValueError, match="betas"):
        alphas_cumprod(bad)
    with pytest.raises(ValueError, match="betas"):
        rescale_zero_terminal_snr(bad)


def test_rescale_needs_a_decreasing_alpha_bar():
    with pytest.raises(ValueError, match="alpha_bar must decrease"):
        rescale_zero_terminal_snr(torch.zeros(10))


def test_the_smallest_schedule_has_two_steps():
    betas = make_betas("linear", 2, beta_start=0.1, beta_end=0.2, dtype=torch.float64)
    assert torch.allclose(betas, torch.tensor([0.1, 0.2], dtype=torch.float64))
    assert torch.allclose(alphas_cumprod(betas), torch.tensor([0.9, 0.72], dtype=torch.float64))


def test_non_integer_steps_message_names_a_valid_value():
    with pytest.raises(ValueError, match=r"num_train_timesteps=1000; got 10\.5"):
        make_betas("linear", 10.5)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_equal_endpoints_give_a_constant_schedule(schedule):
    # beta_start == beta_end is allowed: every step adds the same noise, alpha_bar_t = (1 - beta)^(t + 1)
    betas = make_betas(schedule, num_train_timesteps=5, beta_start=0.01, beta_end=0.01, dtype=torch.float64)
    assert betas.tolist() == pytest.approx([0.01] * 5, rel=1e-12)
    assert alphas_cumprod(betas).tolist() == pytest.approx([0.99 ** (t + 1) for t in range(5)], rel=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_betas_are_computed_in_double_precision(schedule):
    # in float64 the schedule matches plain Python arithmetic to 1e-12; a float32 linspace is off by ~1e-8
    T, b0, b1 = 1000, 0.00085, 0.012
    if schedule == "linear":
        expected = [b0 + (b1 - b0) * i / (T - 1) for i in range(T)]
    else:
        expected = [(b0**0.5 + (b1**0.5 - b0**0.5) * i / (T - 1)) ** 2 for i in range(T)]
    got = make_betas(schedule, num_train_timesteps=T, beta_start=b0, beta_end=b1, dtype=torch.float64)
    assert got.tolist() == pytest.approx(expected, rel=1e-12, abs=0)
