"""The inference time axis: timestep spacings, Euler sigmas and input scaling, flow-matching sigmas, the errors,
and the Lab 03 starter. Expected values come from plain Python arithmetic here, not from the library."""

import math
import re
from fractions import Fraction

import pytest
import torch

from infralens.diffusion import (
    TIMESTEP_SPACINGS,
    add_noise,
    alphas_cumprod,
    euler_sigmas,
    flow_match_sigmas,
    inference_timesteps,
    make_betas,
    scale_model_input,
)


def leading(N, T=1000, offset=0):
    return [k * (T // N) + offset for k in reversed(range(N))]


def trailing_exact(N, T=1000):
    """round(T - k T / N) - 1 in exact arithmetic, half to even (Python's round of a Fraction)."""
    return [round(Fraction(T) - Fraction(k * T, N)) - 1 for k in range(N)]


def linspace_exact(N, T=1000):
    return [round(Fraction(k * (T - 1), N - 1)) for k in reversed(range(N))] if N > 1 else [0]


@pytest.mark.parametrize("N", [1, 2, 3, 7, 20, 25, 50, 100, 250, 999, 1000])
def test_leading(N):
    assert inference_timesteps(N).tolist() == leading(N)
    if (N - 1) * (1000 // N) < 999:
        assert inference_timesteps(N, steps_offset=1).tolist() == leading(N, offset=1)


@pytest.mark.parametrize("N", [1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1000])
def test_trailing_when_n_divides_t(N):
    """When N divides T the grid is exact: T - 1, T - 1 - T/N, ..., T/N - 1."""
    assert inference_timesteps(N, timestep_spacing="trailing").tolist() == trailing_exact(N)


@pytest.mark.parametrize("N", [3, 7, 13, 30, 61, 97, 333, 999])
def test_trailing_other_n_within_one_of_exact(N):
    got = inference_timesteps(N, timestep_spacing="trailing").tolist()
    exact = trailing_exact(N)
    assert len(got) == N and got[0] == 999
    # NumPy's arange step is not exactly -T/N: a value exactly halfway may round the other way
    assert all(abs(a - b) <= 1 for a, b in zip(got, exact, strict=True))


@pytest.mark.parametrize("N", [1, 2, 3, 7, 50, 61, 100, 999, 1000])
def test_linspace(N):
    got = inference_timesteps(N, timestep_spacing="linspace").tolist()
    exact = linspace_exact(N)
    assert all(abs(a - b) <= 1 for a, b in zip(got, exact, strict=True)) and len(got) == N
    if N > 1:
        assert got[0] == 999 and got[-1] == 0


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
@pytest.mark.parametrize("N", [1, 10, 50, 61, 1000])
def test_every_grid_has_n_distinct_descending_trained_timesteps(spacing, N):
    t = inference_timesteps(N, timestep_spacing=spacing)
    assert t.dtype == torch.int64 and t.shape == (N,)
    assert (t >= 0).all() and (t <= 999).all()
    assert (t[:-1] > t[1:]).all()


def test_fifty_steps_which_timesteps_are_visited():
    lead = inference_timesteps(50).tolist()
    assert (lead[0], lead[-1], max(lead)) == (980, 0, 980) and 999 not in lead
    assert inference_timesteps(50, steps_offset=1).tolist() == [t + 1 for t in lead]
    trail = inference_timesteps(50, timestep_spacing="trailing").tolist()
    assert trail == list(range(999, 0, -20)) and 0 not in trail
    lin = inference_timesteps(50, timestep_spacing="linspace").tolist()
    assert lin[:3] == [999, 979, 958] and lin[-1] == 0


def test_euler_grid_keeps_fractions():
    t = inference_timesteps(50, timestep_spacing="linspace", discrete=False)
    assert t.dtype == torch.float32
    expected = torch.tensor([999 * k / 49 for k in reversed(range(50))], dtype=torch.float32)
    assert torch.equal(t, expected)
    assert torch.equal(inference_timesteps(50, discrete=False), inference_timesteps(50).float())


def test_euler_sigmas():
    ab = alphas_cumprod(make_betas("linear"))
    t = torch.tensor([999.0, 500.0, 499.5, 0.0])
    s = euler_sigmas(ab, t)
    table = ((1 - ab.double()) / ab.double()).sqrt()
    assert s.shape == (5,) and s.dtype == torch.float32 and s[-1].item() == 0
    assert torch.allclose(s[[0, 1, 3]].double(), table[[999, 500, 0]], rtol=1e-6)
    assert s[2].item() == pytest.approx((table[499] + table[500]).item() / 2, rel=1e-6)
    # 1 / sqrt(sigma^2 + 1) is sqrt(alpha_bar) at every trained timestep
    assert torch.allclose((s[[0, 1, 3]].double() ** 2 + 1).rsqrt(), ab[[999, 500, 0]].double().sqrt(), rtol=1e-6)


def test_scale_model_input_gives_back_x_t():
    g = torch.Generator().manual_seed(0)
    x0, eps = (
        torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64),
        torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64),
    )
    ab = torch.tensor([0.9, 0.2, 4e-5], dtype=torch.float64)
    sigma = ((1 - ab) / ab).sqrt()
    x_ve = x0 + sigma.view(3, 1, 1, 1) * eps  # the Euler loop's state
    assert torch.allclose(scale_model_input(x_ve, sigma), add_noise(x0, eps, ab), atol=1e-10)
    assert torch.allclose(scale_model_input(x_ve[:1], sigma[0].item()), add_noise(x0[:1], eps[:1], 0.9), atol=1e-12)
    assert torch.equal(scale_model_input(x0, 0.0), x0)
    assert scale_model_input(x0.bfloat16(), 3.0).dtype == torch.bfloat16


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
@pytest.mark.parametrize("N", [1, 4, 50])
def test_flow_match_sigmas(N, shift):
    def sh(s):
        return shift * s / (1 + (shift - 1) * s)

    lo = sh(1 / 1000)  # the smallest training sigma, shifted once when the scheduler is built
    grid = [1.0] if N == 1 else [1 + (lo - 1) * k / (N - 1) for k in range(N)]
    expected = torch.tensor([sh(s) for s in grid] + [0.0])
    got = flow_match_sigmas(N, shift=shift)
    assert got.shape == (N + 1,) and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-7)
    if N > 1 and shift > 1:
        assert got[N - 1].item() > sh(1 / 1000) + 1e-4  # shifted twice


# --- every error message -----------------------------------------------------------------------------------


def test_error_step_counts():
    with pytest.raises(
        ValueError,
        match=r"num_inference_steps must be <= num_train_timesteps = 1000 \(a sampler "
        r"can only visit trained timesteps\), e\.g\. num_inference_steps=50; got 1001",
    ):
        inference_timesteps(1001)
    with pytest.raises(ValueError, match=r"num_inference_steps must be >= 1, e\.g\. num_inference_steps=50; got 0"):
        inference_timesteps(0)
    with pytest.raises(ValueError, match=r"num_inference_steps must be a whole number >= 1"):
        inference_timesteps(50.0)
    with pytest.raises(ValueError, match=r"num_train_timesteps must be >= 1, e\.g\. num_train_timesteps=1000"):
        inference_timesteps(1, num_train_timesteps=0)
    with pytest.raises(ValueError, match=r"num_inference_steps must be >= 1"):
        flow_match_sigmas(0)


def test_error_spacing_offset_discrete():
    with pytest.raises(
        ValueError,
        match=r"timestep_spacing must be one of 'leading', 'trailing', 'linspace', "
        r"e\.g\. timestep_spacing='leading'; got 'karras'",
    ):
        inference_timesteps(50, timestep_spacing="karras")
    for bad in (-1, True, 1.0):
        with pytest.raises(ValueError, match=r"steps_offset must be a whole number >= 0, e\.g\. steps_offset=1"):
            inference_timesteps(50, steps_offset=bad)
    with pytest.raises(
        ValueError,
        match=r"steps_offset must keep the first timestep below num_train_timesteps = "
        r"1000: 999 \+ steps_offset must be <= 999, e\.g\. steps_offset=0; got 1",
    ):
        inference_timesteps(1000, steps_offset=1)
    with pytest.raises(ValueError, match=r"980 \+ steps_offset must be <= 999, e\.g\. steps_offset=1; got 20"):
        inference_timesteps(50, steps_offset=20)
    inference_timesteps(50, steps_offset=19)  # 999 is still a trained timestep
    with pytest.raises(ValueError, match=r"discrete must be True or False, e\.g\. discrete=True; got 0"):
        inference_timesteps(50, discrete=0)


def test_error_euler_sigmas():
    ab = alphas_cumprod(make_betas("linear"))
    with pytest.raises(ValueError, match=r"alpha_bar must be a 1-D floating-point tensor \(T,\)"):
        euler_sigmas(ab[None], torch.tensor([1]))
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\]: sigma = .* is infinite at 0"):
        euler_sigmas(torch.tensor([0.5, 0.0]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"timesteps must be a 1-D tensor \(N,\)"):
        euler_sigmas(ab, torch.tensor(5))
    with pytest.raises(
        ValueError,
        match=r"timesteps must lie in \[0, 999\] \(the training schedule has 1000 steps\)"
        r", e\.g\. inference_timesteps\(50, num_train_timesteps=1000\); got 0 to 1000",
    ):
        euler_sigmas(ab, torch.tensor([1000, 0]))


def test_error_scale_model_input():
    with pytest.raises(ValueError, match=r"sample must be a torch\.Tensor; got list"):
        scale_model_input([1.0], 1.0)
    with pytest.raises(ValueError, match=r"sigma must lie in \[0\.0, inf\], e\.g\. sigma=14\.6; got -1\.0"):
        scale_model_input(torch.zeros(2, 3), -1.0)
    with pytest.raises(ValueError, match="sigma has 3 values but the batch has 2 samples"):
        scale_model_input(torch.zeros(2, 3), torch.ones(3))


def test_error_flow_shift():
    with pytest.raises(ValueError, match=r"shift must be a number > 0, e\.g\. shift=3\.0; got 0"):
        flow_match_sigmas(50, shift=0)


# --- the Lab 03 starter ------------------------------------------------------------------------------------


def linear_alpha_bar(t: int, T: int = 1000, start: float = 1e-4, end: float = 0.02) -> float:
    return math.prod(1 - (start + (end - start) * s / (T - 1)) for s in range(t + 1))


def test_lab_03_starter_output(starter):
    out = starter("diffuser/lab-03-scheduler-reading/scheduler_notes.py")
    rows = {
        m[0]: m[1:]
        for m in re.findall(
            r"^\s+(leading\+1|leading|trailing|linspace)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(yes|no)\s+(yes|no)"
            r"\s+(\S+)\s+(\S+)$",
            out,
            re.M,
        )
    }
    # first, second, last, stride, visits 999, visits 0 (from the spacing rules, computed here)
    assert rows["leading"][:6] == ("980", "960", "0", "20.00", "no", "yes")
    assert rows["leading+1"][:6] == ("981", "961", "1", "20.00", "no", "no")
    assert rows["trailing"][:6] == ("999", "979", "19", "20.00", "yes", "no")
    assert rows["linspace"][:6] == ("999", "979", "0", f"{999 / 49:.2f}", "yes", "yes")
    for name, first in (("leading", 980), ("leading+1", 981), ("trailing", 999)):
        assert float(rows[name][6]) == pytest.approx(linear_alpha_bar(first), rel=0.01)
    assert float(rows["trailing"][7]) == 0.0 == float(rows["linspace"][7])  # zero terminal SNR at t = 999
    assert float(rows["leading"][7]) > 0
    euler = dict(re.findall(r"^\s+(0|1|25|49)\s+([\d.]+)\s+[\d.]+\s+[\d.]+$", out, re.M))
    assert euler == {"0": "999.00", "1": f"{999 * 48 / 49:.2f}", "25": f"{999 * 24 / 49:.2f}", "49": "0.00"}
    sigma0 = math.sqrt((1 - linear_alpha_bar(999)) / linear_alpha_bar(999))
    assert float(re.search(r"init_noise_sigma = (\S+):", out).group(1)) == pytest.approx(sigma0, rel=1e-3)
    assert "at t = 999 and 0: True" in out
    assert float(re.search(r"the model sees std (\S+)", out).group(1)) == pytest.approx(1.0, abs=0.02)
    flow = re.findall(r"^\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+1000\.0$", out, re.M)
    assert [r[0] for r in flow] == ["1.0", "3.0", "5.0"]
    for shift, s0, s1, s25, s49 in flow:
        sh = float(shift)
        lo = sh * 0.001 / (1 + (sh - 1) * 0.001)
        grid = [1 + (lo - 1) * k / 49 for k in (0, 1, 25, 49)]
        expected = [sh * g / (1 + (sh - 1) * g) for g in grid]
        assert [float(v) for v in (s0, s1, s25, s49)] == pytest.approx(expected, abs=6e-5)
    lin = linspace_exact(50)
    off = [t for t, nxt in zip(lin, [*lin[1:], -1], strict=True) if nxt != max(t - 20, -1)]
    assert f"linspace grid: {len(off)} of 50 steps" in out


# --- Karras sigmas ----------------------------------------------------------------------------------


def test_karras_sigmas_by_exact_properties():
    from infralens.diffusion import karras_sigmas

    s = karras_sigmas(12, 0.002, 80.0)
    assert s[0].item() == pytest.approx(80.0, rel=1e-12) and s[-1].item() == pytest.approx(0.002, rel=1e-12)
    steps = torch.diff(s ** (1 / 7))  # evenly spaced in sigma^(1/rho)
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-12)
    assert (s[1:] < s[:-1]).all()
    assert karras_sigmas(5, 1.0, 5.0, rho=1.0).tolist() == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0])
    assert karras_sigmas(1, 0.5, 2.0).tolist() == pytest.approx([2.0])
    # larger rho puts more of the steps at low noise
    lo = [int((karras_sigmas(20, 0.002, 80.0, rho=r) < 1).sum()) for r in (1.0, 3.0, 7.0)]
    assert lo[0] < lo[1] < lo[2]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"num_inference_steps": 0}, ["num_inference_steps must be >= 1"]),
        ({"sigma_min": 0.0}, ["sigma_min must be a finite number > 0", "0.002"]),
        ({"sigma_max": float("inf")}, ["sigma_max must be a finite number > 0"]),
        ({"rho": -7}, ["rho must be a finite number > 0", "rho=7.0", "-7"]),
        ({"sigma_min": 90.0}, ["sigma_max must be > sigma_min=90.0", "got 80.0"]),
    ],
)
def test_karras_sigmas_errors(kwargs, words):
    from infralens.diffusion import karras_sigmas

    args = {"num_inference_steps": 10, "sigma_min": 0.002, "sigma_max": 80.0} | kwargs
    rho = args.pop("rho", 7.0)
    with pytest.raises(ValueError) as err:
        karras_sigmas(**args, rho=rho)
    for w in words:
        assert w in str(err.value)
