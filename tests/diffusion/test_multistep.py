"""Multistep flow solvers: grids, the orders used, exact identities, convergence, errors, and the Lab 11 starter.

The reference for every run is the exact ODE solution of Gaussian data (GaussianVelocity.exact_flow), an
independent closed form; diffusers' own schedulers are compared in tests/upstream/test_flow_solvers_upstream.py.
"""

import math
import re

import pytest
import torch

from infralens.diffusion import (
    SOLVERS,
    flow_euler_step,
    flow_match_sigmas,
    flow_multistep_sample,
    flow_solver_sigmas,
    shift_sigmas,
    solver_orders,
)
from infralens.nets import GaussianVelocity

FIELD = GaussianVelocity(mean=0.5, std=0.6)


def noise(seed=0, dtype=torch.float32):
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def error(solver, sigmas, order=None, field=FIELD, x=None):
    x = noise() if x is None else x
    out = flow_multistep_sample(field, x, sigmas, solver=solver, solver_order=order)
    return (out - field.exact_flow(x, sigmas[0].item())).pow(2).mean().sqrt().item()


# --- grids -------------------------------------------------------------------------------------------


def test_grids_by_hand():
    T = 1000
    assert flow_solver_sigmas(4, solver="euler").tolist() == flow_match_sigmas(4).tolist()[:-1]
    dpm = [(1 - 1 / T) * (4 - k) / 4 for k in range(4)]  # 1 - linspace(1, 1/T, 5), reversed, 0 dropped
    assert flow_solver_sigmas(4, solver="dpmsolver++").tolist() == pytest.approx(dpm, abs=1e-7)
    unipc = [1 - 1e-6] + [1 - k * (1 - 1 / T) / 4 for k in range(1, 4)]
    assert flow_solver_sigmas(4, solver="unipc").tolist() == pytest.approx(unipc, abs=1e-7)
    shifted = flow_solver_sigmas(4, solver="dpmsolver++", shift=3.0)
    assert torch.allclose(shifted.double(), shift_sigmas(torch.tensor(dpm, dtype=torch.float64), 3.0), atol=1e-7)


@pytest.mark.parametrize("solver", SOLVERS)
def test_grids_decrease_inside_zero_one(solver):
    for n in (1, 2, 7, 50):
        s = flow_solver_sigmas(n, solver=solver, shift=5.0)
        assert s.shape == (n,) and s.dtype == torch.float32
        assert (s > 0).all() and (s <= 1).all() and (s[1:] < s[:-1]).all()


# --- orders ------------------------------------------------------------------------------------------


def test_orders_by_rule():
    assert solver_orders(1, solver="dpmsolver++") == (1,)
    assert solver_orders(2, solver="dpmsolver++", solver_order=3) == (1, 1)
    assert solver_orders(5, solver="dpmsolver++", solver_order=3) == (1, 2, 3, 2, 1)
    assert solver_orders(15, solver="dpmsolver++", solver_order=3) == (1, 2) + (3,) * 12 + (1,)  # N >= 15
    assert solver_orders(6, solver="unipc", solver_order=3) == (1, 2, 3, 3, 2, 1)
    assert solver_orders(20, solver="unipc", solver_order=1) == (1,) * 20
    assert solver_orders(4, solver="euler") == (1, 1, 1, 1)


# --- exact identities ----------------------------------------------------------------------------------


def test_first_order_is_euler_on_the_same_grid():
    s = flow_solver_sigmas(6, solver="dpmsolver++")
    euler = flow_multistep_sample(FIELD, noise(), s, solver="euler")
    for solver in ("dpmsolver++", "unipc"):
        first = flow_multistep_sample(FIELD, noise(), s, solver=solver, solver_order=1)
        if solver == "dpmsolver++":
            assert torch.allclose(first, euler, atol=1e-5)
        else:  # UniPC-1 corrects each point with the new prediction: no longer Euler
            assert not torch.allclose(first, euler, atol=1e-3)
    two = flow_solver_sigmas(2, solver="dpmsolver++")  # orders (1, 1): every multistep run is Euler
    ref = flow_multistep_sample(FIELD, noise(), two, solver="euler")
    for p in (2, 3):
        assert torch.allclose(flow_multistep_sample(FIELD, noise(), two, solver="dpmsolver++", solver_order=p), ref)


@pytest.mark.parametrize(("solver", "order"), [("euler", None), ("dpmsolver++", 2), ("dpmsolver++", 3), ("unipc", 3)])
def test_point_mass_is_exact_for_every_solver(solver, order):
    """For d = 0 every x0_hat is m, so each step is the exact flow: all solvers land on m."""
    field = GaussianVelocity(mean=-0.7, std=0.0)
    out = flow_multistep_sample(
        field, noise(), flow_solver_sigmas(5, solver="unipc"), solver=solver, solver_order=order
    )
    assert torch.allclose(out, torch.full_like(out, -0.7), atol=1e-5)


def test_convergence_orders_on_an_even_lambda_grid():
    """Errors on a grid even in lambda whose last point goes to 0: Euler's observed order ~1, UniPC-2's above 2."""
    x = noise(dtype=torch.float64)

    def grid(n):
        end = 0.05 / n
        lam = torch.linspace(0.0, math.log((1 - end) / end), n, dtype=torch.float64)
        return 1 / (1 + lam.exp())  # sigma = 1 / (1 + e^lambda)

    def observed(solver, order):
        e = [error(solver, grid(n), order, x=x) for n in (32, 64, 128)]
        return [math.log2(e[i] / e[i + 1]) for i in range(2)]

    assert all(0.8 < o < 1.2 for o in observed("euler", None))
    assert all(o > 2.2 for o in observed("unipc", 2))
    assert all(o > 2.5 for o in observed("unipc", 3))


def test_errors_shrink_with_steps_and_multistep_beats_euler():
    for solver in ("dpmsolver++", "unipc"):
        few, many = (error(solver, flow_solver_sigmas(n, solver=solver)) for n in (4, 50))
        assert many < few / 10
        assert (
            error(solver, flow_solver_sigmas(8, solver=solver))
            < error("euler", flow_solver_sigmas(8, solver="euler")) / 5
        )


def test_float64_latents_keep_their_dtype():
    out = flow_multistep_sample(
        FIELD, noise(dtype=torch.float64), flow_solver_sigmas(4, solver="unipc"), solver="unipc"
    )
    assert out.dtype == torch.float64 and out.shape == (1, 4, 8, 8)


def test_calls_and_timesteps():
    seen = []

    def model(x, t, text):
        seen.append((t.clone(), text))
        return FIELD(x, t)

    s = flow_solver_sigmas(5, solver="dpmsolver++", shift=3.0)
    flow_multistep_sample(model, noise(), s, solver="dpmsolver++", text="prompt")
    assert len(seen) == 5 and all(text == "prompt" for _, text in seen)
    assert torch.allclose(torch.stack([t[0] for t, _ in seen]), 1000 * s.double().float(), atol=1e-3)


def test_euler_step_identity_used_on_the_page():
    s, s_next = 0.6, 0.45
    x = FIELD.exact_flow(noise(), 1.0, s)
    v = FIELD(x, torch.tensor([1000 * s]))
    h = math.log((1 - s_next) / s_next) - math.log((1 - s) / s)
    order1 = s_next / s * x - (1 - s_next) * math.expm1(-h) * (x - s * v)
    assert torch.allclose(order1, flow_euler_step(x, v, s, s_next), atol=1e-6)


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: flow_solver_sigmas(4, solver="heun"), ["solver must be one of", "'unipc'", "'heun'"]),
        (lambda: flow_solver_sigmas(0, solver="unipc"), ["num_inference_steps must be >= 1", "got 0"]),
        (lambda: solver_orders(4, solver="euler", solver_order=2), ["solver_order must be 1", "'euler'", "got 2"]),
        (lambda: solver_orders(4, solver="unipc", solver_order=4), ["solver_order must be 1, 2 or 3", "got 4"]),
        (lambda: solver_orders(4, solver="unipc", solver_order=True), ["solver_order must be 1, 2 or 3", "True"]),
        (
            lambda: flow_multistep_sample(FIELD, noise(), torch.tensor([1.0, 0.5]), solver="unipc"),
            ["sigmas must decrease strictly and lie in (0, 1)", "infinite", "flow_solver_sigmas(20, solver='unipc')"],
        ),
        (
            lambda: flow_multistep_sample(FIELD, noise(), torch.tensor([0.5, 0.6]), solver="euler"),
            ["sigmas must decrease strictly and lie in [0, 1]", "[0.5"],
        ),
        (lambda: flow_multistep_sample(FIELD, noise(), torch.tensor([]), solver="euler"), ["1-D tensor of N >= 1"]),
        (
            lambda: flow_multistep_sample(FIELD, torch.zeros(2, dtype=torch.long), torch.tensor([0.5]), solver="euler"),
            ["latents must be a floating-point tensor"],
        ),
    ],
)
def test_errors(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for w in words:
        assert w in str(err.value)


# --- the Lab 11 starter --------------------------------------------------------------------------------


@pytest.fixture
def out(starter) -> str:
    return starter("diffuser/lab-11-flow-matching-samplers/flow_samplers.py")  # run once per session


def test_starter_targets(out):
    found = re.search(r"RMS of u = eps - x0: (\S+); of v: (\S+); of u - v: (\S+)", out).groups()
    rms_u, rms_v, rms_diff = map(float, found)
    assert rms_diff > 0.3 * rms_u and abs(rms_u - rms_v) > 0.1  # a different tensor, not a rescaling
    assert float(re.search(r"lands on x0: (\S+)", out).group(1)) < 1e-5
    assert float(re.search(r"max \|x - m\| (\S+): every sample at the mean", out).group(1)) < 1e-5


def test_starter_error_table(out):
    first = out.split("RMS error against the exact ODE")[1].split("orders used")[0]
    rows = dict(
        re.findall(r"^  (Euler|Euler, DPM grid|DPM\+\+ 2M|DPM\+\+ 3M|UniPC-2|UniPC-3)\s+([\d. ]+)$", first, re.M)
    )
    table = {name: [float(v) for v in values.split()] for name, values in rows.items()}
    assert len(table) == 6
    # recompute rows independently of the starter (the reference is the closed-form exact flow)
    runs = {"Euler": ("euler", None, "euler"), "DPM++ 2M": ("dpmsolver++", 2, "dpmsolver++")}
    runs["UniPC-3"] = ("unipc", 3, "unipc")
    x1 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    for name, (solver, p, grid) in runs.items():
        for n, printed in zip((2, 4, 6, 8, 12, 16, 32), table[name], strict=True):
            assert printed == pytest.approx(error(solver, flow_solver_sigmas(n, solver=grid), p, x=x1), abs=1e-4)
    assert table["Euler, DPM grid"][0] == table["DPM++ 2M"][0]  # two steps: the grid is the whole difference
    assert "DPM++ 2M  (1, 2, 2, 2, 2, 2, 2, 1)" in out and "UniPC-3   (1, 2, 3, 3, 3, 3, 2, 1)" in out


def test_starter_shifts(out):
    assert "Paths bend most at sigma = 0.265; sigmas below 0.4 out of 16, by shift: {1.0: 6, 3.0: 2}" in out
    for res, tokens in ((512, 1024), (1024, 4096)):
        mu = 0.5 + 0.65 * (tokens - 256) / 3840
        assert f"FLUX.1-dev {res}x{res}: {tokens:,} packed tokens -> mu {mu:.4f}, shift {math.exp(mu):.4f}" in out
    sd3 = re.search(r"SD3, shift 3.0\s+([\d.]+)\s+(\d+)", out).groups()
    s_min = 3 * 0.001 / (1 + 2 * 0.001)  # diffusers' sigma_min: 1/T, shifted once
    grid = [1 + (s_min - 1) * k / 27 for k in range(28)]  # 1 down to it, then shifted again
    shifted = [3 * s / (1 + 2 * s) for s in grid]
    assert float(sd3[0]) == pytest.approx(shifted[14], abs=1e-4) and int(sd3[1]) == sum(s > 0.5 for s in shifted)


def test_starter_karras(out):
    line = re.search(r"rho = 7:\n  (.+)", out).group(1).split()
    expected = [(80 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(10)]
    assert [float(v) for v in line] == pytest.approx(expected, rel=5e-4)
    assert "all equal: True" in out


def test_euler_accepts_a_grid_that_ends_at_zero():
    # diffusers' Euler grids end with sigma = 0; the step from 0 to 0 changes nothing
    x = noise()

    def velocity(latents, timesteps, text=None):  # defined at every sigma, 0 included
        return latents * (1 + timesteps.reshape(-1, 1, 1, 1) / 1000)

    ends_at_zero = flow_multistep_sample(velocity, x, torch.tensor([1.0, 0.5, 0.0]), solver="euler")
    assert torch.equal(ends_at_zero, flow_multistep_sample(velocity, x, torch.tensor([1.0, 0.5]), solver="euler"))
    with pytest.raises(ValueError, match=r"lie in \(0, 1\)"):
        flow_multistep_sample(FIELD, x, torch.tensor([0.9, 0.5, 0.0]), solver="unipc")
