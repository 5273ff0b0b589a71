"""The alpha-beta model's step and volume counts against collectives executed step by step on virtual ranks.

Each simulator below runs an algorithm on ``n`` lists of float32 chunks, one
message per rank per step, checks the result against the collective's
definition (a sum, a concatenation, a transpose), and counts the steps and
the bytes the busiest rank sends. The model's ``steps`` and ``volume`` must be
those counts; a wrong coefficient in the model's table fails here.
"""

import math

import pytest
import torch

from infralens.distributed import COLLECTIVES, bus_bandwidth, collective_terms, collective_time

ELEM = 4  # float32 bytes


def simulate_ring_reduce_scatter(chunks):
    """Ring reduce-scatter: rank r ends with the sum of chunk (r + 1) % n. Returns steps, sent bytes per rank."""
    n = len(chunks)
    buf = [[c.clone() for c in rank] for rank in chunks]
    sent = [0] * n
    for step in range(n - 1):
        msgs = []
        for r in range(n):
            idx = (r - step) % n
            msgs.append(((r + 1) % n, idx, buf[r][idx].clone()))
            sent[r] += buf[r][idx].numel() * ELEM
        for dst, idx, t in msgs:
            buf[dst][idx] += t
    return buf, n - 1, sent


def simulate_ring_all_gather(owned):
    """Ring all-gather: rank r starts with chunk index owned[r][0] filled. Returns final buffers, steps, sent."""
    n = len(owned)
    buf = [dict([o]) for o in owned]
    sent = [0] * n
    for step in range(n - 1):
        msgs = []
        for r in range(n):
            idx = (owned[r][0] - step) % n
            msgs.append(((r + 1) % n, idx, buf[r][idx]))
            sent[r] += buf[r][idx].numel() * ELEM
        for dst, idx, t in msgs:
            buf[dst][idx] = t.clone()
    return buf, n - 1, sent


def simulate_binomial_tree_all_reduce(tensors):
    """Binomial-tree reduce to rank 0, then broadcast: each round a rank sends its whole buffer at most once."""
    n = len(tensors)
    buf = [t.clone() for t in tensors]
    sent, rounds = [0] * n, 0
    d = 1
    while d < n:  # reduce
        for r in range(0, n, 2 * d):
            if r + d < n:
                buf[r] += buf[r + d]
                sent[r + d] += buf[r + d].numel() * ELEM
        d *= 2
        rounds += 1
    while d > 1:  # broadcast
        d //= 2
        for r in range(0, n, 2 * d):
            if r + d < n:
                buf[r + d] = buf[r].clone()
                sent[r] += buf[r].numel() * ELEM
        rounds += 1
    return buf, rounds, sent


def simulate_pairwise_all_to_all(blocks):
    """Pairwise exchange: in step s rank r sends block (r + s) % n to rank (r + s) % n."""
    n = len(blocks)
    out = [[None] * n for _ in range(n)]
    sent = [0] * n
    for r in range(n):
        out[r][r] = blocks[r][r]
    for step in range(1, n):
        for r in range(n):
            dst = (r + step) % n
            out[dst][r] = blocks[r][dst]
            sent[r] += blocks[r][dst].numel() * ELEM
    return out, n - 1, sent


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_ring_all_reduce_is_reduce_scatter_then_all_gather(n):
    g = torch.Generator().manual_seed(n)
    N_elems = 6 * n
    tensors = [torch.randn(N_elems, generator=g) for _ in range(n)]
    chunks = [list(t.chunk(n)) for t in tensors]
    reduced, s1, sent1 = simulate_ring_reduce_scatter(chunks)
    owned = [((r + 1) % n, reduced[r][(r + 1) % n]) for r in range(n)]
    gathered, s2, sent2 = simulate_ring_all_gather(owned)
    total = torch.stack(tensors).sum(0)
    for r in range(n):
        assert torch.allclose(torch.cat([gathered[r][i] for i in range(n)]), total, atol=1e-5)
    terms = collective_terms("all_reduce", n)
    assert terms.steps == s1 + s2
    N = N_elems * ELEM
    assert max(a + b for a, b in zip(sent1, sent2, strict=True)) == pytest.approx(terms.volume * N)


@pytest.mark.parametrize("n", [2, 4, 5, 8])
def test_ring_all_gather_and_reduce_scatter(n):
    N_elems = 4 * n
    N = N_elems * ELEM
    parts = [torch.full((N_elems // n,), float(r)) for r in range(n)]
    gathered, steps, sent = simulate_ring_all_gather([(r, parts[r]) for r in range(n)])
    assert all(torch.equal(torch.cat([gathered[r][i] for i in range(n)]), torch.cat(parts)) for r in range(n))
    t = collective_terms("all_gather", n)
    assert (t.steps, max(sent)) == (steps, pytest.approx(t.volume * N))  # N = the gathered output
    chunks = [list(torch.ones(N_elems).chunk(n)) for _ in range(n)]
    reduced, steps, sent = simulate_ring_reduce_scatter(chunks)
    assert all(torch.equal(reduced[r][(r + 1) % n], torch.full((N_elems // n,), float(n))) for r in range(n))
    t = collective_terms("reduce_scatter", n)
    assert (t.steps, max(sent)) == (steps, pytest.approx(t.volume * N))  # N = the whole input


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_tree_all_reduce(n):
    tensors = [torch.full((16,), float(r + 1)) for r in range(n)]
    out, rounds, sent = simulate_binomial_tree_all_reduce(tensors)
    assert all(torch.equal(o, torch.full((16,), float(n * (n + 1) / 2))) for o in out)
    t = collective_terms("all_reduce", n, algorithm="tree")
    assert t.steps == rounds == 2 * math.ceil(math.log2(n))
    # the critical path carries the whole buffer once per round; no rank sends more than that
    assert max(sent) <= t.volume * 16 * ELEM


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_pairwise_all_to_all(n):
    blocks = [[torch.tensor([10.0 * r + c]) for c in range(n)] for r in range(n)]
    out, steps, sent = simulate_pairwise_all_to_all(blocks)
    assert all(out[d][r] == blocks[r][d] for d in range(n) for r in range(n))  # a transpose
    t = collective_terms("all_to_all", n)
    assert (t.steps, max(sent)) == (steps, pytest.approx(t.volume * n * ELEM))  # N = what each rank holds


def test_time_is_latency_plus_bandwidth():
    alpha, beta = 5e-6, 1 / 50e9
    t = collective_time("all_reduce", 1e9, 8, alpha=alpha, beta=beta)
    assert t == pytest.approx(14 * alpha + 1.75e9 * beta)
    small = collective_time("all_reduce", 1024, 8, alpha=alpha, beta=beta)
    assert 14 * alpha / small > 0.99  # a 1 KiB all-reduce is all latency
    ring = collective_time("all_reduce", 1024, 64, alpha=alpha, beta=beta)
    tree = collective_time("all_reduce", 1024, 64, alpha=alpha, beta=beta, algorithm="tree")
    assert tree < ring  # fewer steps win for small messages ...
    big_ring = collective_time("all_reduce", 1e9, 64, alpha=alpha, beta=beta)
    big_tree = collective_time("all_reduce", 1e9, 64, alpha=alpha, beta=beta, algorithm="tree")
    assert big_ring < big_tree  # ... and fewer bytes for large ones


def test_one_rank_costs_nothing():
    assert all(collective_terms(c, 1).steps == 0 for c in COLLECTIVES)
    assert collective_time("all_gather", 1e6, 1, alpha=1.0, beta=1.0) == 0


def test_bus_bandwidth_is_bytes_sent_per_second():
    algbw, busbw = bus_bandwidth("all_reduce", 1e9, 0.035, 8)
    assert algbw == pytest.approx(1e9 / 0.035)
    assert busbw == pytest.approx(2 * 7 / 8 * 1e9 / 0.035)
    for c in ("all_gather", "reduce_scatter", "all_to_all"):
        assert bus_bandwidth(c, 800, 1.0, 4) == (800, pytest.approx(600))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: collective_terms("allreduce", 8), r"collective must be one of all_reduce, .*got 'allreduce'"),
        (lambda: collective_terms("all_gather", 8, algorithm="tree"), r"algorithm for all_gather must be one of ring"),
        (lambda: collective_terms("all_reduce", 0), r"world_size must be >= 1, e\.g\. world_size=8"),
        (lambda: collective_time("all_reduce", -1, 8, alpha=0, beta=0), r"nbytes must be >= 0, e\.g\. nbytes=1024"),
        (lambda: collective_time("all_reduce", 1, 8, alpha=-1, beta=0), r"alpha must be >= 0"),
        (lambda: collective_time("all_reduce", 1, 8, alpha=0, beta=math.nan), r"beta must be a finite number >= 0"),
        (lambda: bus_bandwidth("all_reduce", 1, 0, 8), r"seconds must be > 0, e\.g\. seconds=0\.035"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
