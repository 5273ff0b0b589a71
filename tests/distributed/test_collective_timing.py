"""Collectives timed on real gloo processes, and the alpha-beta fit of them.

Timings depend on the machine and its load, so these tests check properties
that hold whatever the machine: positive times, small messages costing about
the same as each other (latency), large ones costing more (bandwidth), and a
fit whose median error stays bounded.
"""

from pathlib import Path

import pytest
import torch.distributed as dist

from infralens.distributed import (
    COLLECTIVES,
    DEFAULT_SIZES,
    RankError,
    collective_terms,
    fit_alpha_beta,
    measure_collectives,
    run_ranks,
    time_collectives,
)

HERE = Path(__file__).resolve()


@pytest.fixture(scope="module")
def samples():
    return measure_collectives(2, timeout=120)


def test_every_collective_at_every_size(samples):
    assert [(s.collective, s.nbytes) for s in samples] == [(c, n) for c in COLLECTIVES for n in DEFAULT_SIZES]
    assert all(0 < s.seconds < 1 for s in samples)


def test_latency_dominates_small_messages_bandwidth_large_ones(samples):
    t = {(s.collective, s.nbytes): s.seconds for s in samples}
    for c in COLLECTIVES:
        assert t[(c, 16 * 1024)] < 4 * t[(c, 16)]  # 16 B to 16 KiB: 1000x the bytes, about the same time
        assert t[(c, 4 * 1024**2)] > 3 * t[(c, 16)]  # 4 MiB: the bytes show


def test_the_fit(samples):
    fit = fit_alpha_beta(samples, 2)
    assert 1e-7 < fit.alpha < 1e-2 and 1e7 < fit.bandwidth < 1e12
    assert fit.median_abs_error < 0.6
    ar = collective_terms("all_reduce", 2)
    assert ar.steps * fit.alpha / ar.time(16, alpha=fit.alpha, beta=fit.beta) > 0.99  # 16 B: all latency


def not_a_multiple(rank, world_size):
    return time_collectives(["all_reduce"], [12])


def test_errors():
    with pytest.raises(ValueError, match="runs inside a process group"):
        time_collectives()
    with pytest.raises(RankError, match=r"sizes must be multiples of 4 \* world_size = 8 bytes .*e\.g\. 8; got 12"):
        run_ranks(f"{HERE}:not_a_multiple", 2, timeout=60)
    assert not dist.is_initialized()
