"""GaussianVelocity: its velocity against a Monte Carlo estimate, and exact_flow against the ODE it solves."""

import pytest
import torch

from infralens.nets import GaussianVelocity


def test_velocity_is_the_conditional_mean_of_eps_minus_x0():
    """E[eps - x0 | x_sigma] by regression on simulated pairs: an estimate that never uses the closed form."""
    m, d, sigma = 0.5, 0.6, 0.4
    g = torch.Generator().manual_seed(0)
    n = 400_000
    x0 = m + d * torch.randn(n, generator=g, dtype=torch.float64)
    eps = torch.randn(n, generator=g, dtype=torch.float64)
    x = (1 - sigma) * x0 + sigma * eps
    target = eps - x0
    slope = torch.cov(torch.stack([x, target]))[0, 1] / x.var()  # Gaussian: the conditional mean is linear
    intercept = target.mean() - slope * x.mean()
    field = GaussianVelocity(mean=m, std=d)
    probe = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    assert torch.allclose(field(probe, torch.tensor([1000 * sigma])), intercept + slope * probe, atol=0.01)


@pytest.mark.parametrize(("m", "d"), [(0.5, 0.6), (0.0, 1.0), (-1.0, 0.0), (2.0, 3.0)])
def test_exact_flow_solves_the_ode(m, d):
    field = GaussianVelocity(mean=m, std=d)
    x1 = torch.randn(64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = 1e-5
    for s in (0.9, 0.5, 0.2):
        x = field.exact_flow(x1, 1.0, s)
        fd = (field.exact_flow(x1, 1.0, s + h) - field.exact_flow(x1, 1.0, s - h)) / (2 * h)
        assert torch.allclose(fd, field(x, torch.tensor([1000 * s])), atol=1e-6)


def test_exact_flow_composes_and_ends_on_the_sample():
    field = GaussianVelocity(mean=0.3, std=0.7)
    x = torch.randn(32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    direct = field.exact_flow(x, 0.9, 0.1)
    assert torch.allclose(field.exact_flow(field.exact_flow(x, 0.9, 0.5), 0.5, 0.1), direct, atol=1e-12)
    assert torch.allclose(field.exact_flow(x, 1.0), field.exact_sample(x), atol=1e-12)
    assert torch.allclose(field.exact_flow(x, 0.4, 0.4), x, atol=1e-12)
    back = field.exact_flow(field.exact_flow(x, 0.9, 0.0), 0.0, 0.9)  # d > 0: the map is invertible
    assert torch.allclose(back, x, atol=1e-12)
    assert field.exact_flow(x.float(), 0.9).dtype == torch.float32


def test_exact_flow_marginals():
    """From N(0, 1) at sigma = 1, the flow gives N((1 - s) m, (1 - s)^2 d^2 + s^2) at every s."""
    m, d = 0.5, 0.6
    field = GaussianVelocity(mean=m, std=d)
    x1 = torch.randn(400_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for s in (0.7, 0.3, 0.0):
        xs = field.exact_flow(x1, 1.0, s)
        assert xs.mean().item() == pytest.approx((1 - s) * m, abs=0.01)
        assert xs.std().item() == pytest.approx(((1 - s) ** 2 * d * d + s * s) ** 0.5, abs=0.01)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda f: f.exact_flow(torch.zeros(2), 1.5), ["sigma_from must be a number in [0, 1]", "got 1.5"]),
        (lambda f: f.exact_flow(torch.zeros(2), 0.5, -0.1), ["sigma_to must be a number in [0, 1]", "got -0.1"]),
        (lambda f: GaussianVelocity(std=0.0).exact_flow(torch.zeros(2), 0.0), ["sigma_from must be > 0 when std is 0"]),
    ],
)
def test_exact_flow_errors(call, words):
    with pytest.raises(ValueError) as err:
        call(GaussianVelocity())
    for w in words:
        assert w in str(err.value)
