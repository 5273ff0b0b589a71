"""The alpha-beta fit on exact data: it gives back the parameters the data were made with, edge cases included."""

import math

import pytest

from infralens.distributed import AlphaBetaFit, Sample, collective_terms, fit_alpha_beta


def made(alpha, beta, sizes=(16, 4096, 1 << 20), collective="all_reduce"):
    terms = collective_terms(collective, 4)
    return [Sample(collective, n, terms.time(n, alpha=alpha, beta=beta)) for n in sizes]


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [
        (5e-5, 1e-9),
        (0.0, 1e-9),  # pure bandwidth: the unconstrained fit already has alpha = 0 (a signed zero)
        (5e-5, 0.0),  # pure latency
    ],
)
def test_exact_data_give_back_their_parameters(alpha, beta):
    fit = fit_alpha_beta(made(alpha, beta), 4)
    assert fit.alpha == pytest.approx(alpha, abs=1e-15) and fit.beta == pytest.approx(beta, abs=1e-21)
    assert fit.max_abs_error < 1e-9


def test_two_sizes_are_enough_for_two_unknowns():
    fit = fit_alpha_beta(made(5e-5, 1e-9, sizes=(16, 1 << 20)), 4)
    assert fit.alpha == pytest.approx(5e-5) and fit.bandwidth == pytest.approx(1e9)
    with pytest.raises(ValueError, match="at least 2 measurements"):
        fit_alpha_beta(made(5e-5, 1e-9, sizes=(16,)), 4)


def test_no_cost_per_byte_is_infinite_bandwidth():
    fit = AlphaBetaFit(alpha=5e-5, beta=0.0, world_size=4, samples=(), predicted=())
    assert fit.bandwidth == math.inf
