"""The ring all-reduce by hand on real processes: equal to ``dist.all_reduce``, and its bytes as the formula says.

This is the measured referent of :func:`ring_allreduce_bytes`: the bytes are
counted at each send of a real run, not computed from the formula.
"""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from infralens.distributed import (
    BytesSent,
    reduce_scatter_bytes,
    ring_allreduce,
    ring_allreduce_bytes,
    ring_allreduce_schedule,
    run_ranks,
)

HERE = Path(__file__).resolve()


def ring_vs_gloo(rank, world_size):
    out = {}
    for numel in (12 * 1024, 7):  # chunks of equal size, and uneven ones (7 = 3 + 2 + 2)
        g = torch.Generator().manual_seed(rank)
        x = torch.randn(numel, dtype=torch.float64, generator=g)
        mine, reference = x.clone(), x.clone()
        with BytesSent() as wire:
            counted = ring_allreduce(mine)
        dist.all_reduce(reference)
        out[numel] = {"equal": torch.allclose(mine, reference), "counted": counted, "wire": wire.bytes}
    return out


@pytest.fixture(scope="module")
def three_ranks():
    return run_ranks(f"{HERE}:ring_vs_gloo", 3, timeout=20)  # about 2 s; a ring that deadlocks fails fast


def test_the_hand_ring_equals_all_reduce(three_ranks):
    assert all(r[numel]["equal"] for r in three_ranks for numel in (12 * 1024, 7))


def test_bytes_counted_at_each_send_match_the_formula(three_ranks):
    nbytes = 12 * 1024 * 8
    assert [r[12 * 1024]["counted"] for r in three_ranks] == [ring_allreduce_bytes(nbytes, 3)] * 3
    # uneven chunks: ranks send different amounts, but each chunk still travels 2 (N - 1) hops
    uneven = [r[7]["counted"] for r in three_ranks]
    assert len(set(uneven)) > 1 and sum(uneven) == pytest.approx(3 * ring_allreduce_bytes(7 * 8, 3))


def test_the_kernel_saw_those_bytes_leave(three_ranks):
    for r in three_ranks:
        payload = r[12 * 1024]["counted"]
        assert payload <= r[12 * 1024]["wire"] < payload * 1.01  # gloo adds small headers


def test_schedule_each_rank_sends_one_chunk_per_step_to_its_right():
    n = 4
    sends = ring_allreduce_schedule(n)
    assert len(sends) == 2 * (n - 1) * n
    for step in range(2 * (n - 1)):
        this = [s for s in sends if s.step == step]
        assert sorted(s.src for s in this) == list(range(n))
        assert all(s.dst == (s.src + 1) % n for s in this)
        assert sorted(s.chunk for s in this) == list(range(n))  # every chunk moves once per step
    reduce_scatter = [s for s in sends if s.phase == "reduce-scatter"]
    assert len(reduce_scatter) / n * (1 / n) == reduce_scatter_bytes(1, n)  # (N - 1) chunks of n / N per rank


def test_schedule_error():
    with pytest.raises(ValueError, match=r"world_size must be >= 1, e.g. world_size=4; got 0"):
        ring_allreduce_schedule(0)


def ring_in_a_subgroup(rank, world_size):
    # ranks 1, 2, 3 form a ring of their own: group ranks 0, 1, 2 are global ranks 1, 2, 3, and the
    # ring has three members, so its two directions differ
    group = dist.new_group([1, 2, 3])
    if rank == 0:
        return None
    x = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(rank))
    mine, reference = x.clone(), x.clone()
    ring_allreduce(mine, group=group)
    dist.all_reduce(reference, group=group)
    return torch.allclose(mine, reference)


def test_the_ring_runs_inside_a_subgroup():
    assert run_ranks(f"{HERE}:ring_in_a_subgroup", 4, timeout=30) == [None, True, True, True]
