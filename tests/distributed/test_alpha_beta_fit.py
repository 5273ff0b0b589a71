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


def one_unknown(column):
    """Least squares of ``c * column_i = 1`` for one unknown c: sum(x) / sum(x^2), by hand."""
    return sum(column) / sum(x * x for x in column)


def test_a_negative_latency_is_fitted_again_with_alpha_zero():
    # times that fall below the bandwidth line by a constant: the two-unknown fit puts alpha below 0
    terms = collective_terms("all_reduce", 4)
    sizes = (1 << 16, 1 << 18, 1 << 20)
    samples = [Sample("all_reduce", n, terms.volume * n * 1e-9 - 1e-6) for n in sizes]
    fit = fit_alpha_beta(samples, 4)
    assert fit.alpha == 0.0
    assert fit.beta == pytest.approx(one_unknown([terms.volume * s.nbytes / s.seconds for s in samples]), rel=1e-12)


def test_a_negative_cost_per_byte_is_fitted_again_with_beta_zero():
    # times that shrink with the size: the two-unknown fit puts beta below 0
    terms = collective_terms("all_reduce", 4)
    sizes = (16, 4096, 1 << 16)
    samples = [Sample("all_reduce", n, terms.steps * 1e-5 - terms.volume * n * 1e-12) for n in sizes]
    fit = fit_alpha_beta(samples, 4)
    assert fit.beta == 0.0 and fit.bandwidth == math.inf
    assert fit.alpha == pytest.approx(one_unknown([terms.steps / s.seconds for s in samples]), rel=1e-12)
