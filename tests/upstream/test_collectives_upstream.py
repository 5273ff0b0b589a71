"""What gloo's collectives really send, per rank, measured by the kernel on real processes.

The byte formulas of :mod:`infralens.distributed.collectives` are the
bandwidth-optimal (ring) amounts. Here torch with gloo runs each
collective on 2 and 4 processes and :class:`~infralens.distributed.BytesSent`
counts what left each rank's sockets. All-reduce, all-gather and all-to-all
send exactly the ring amounts; gloo's reduce-scatter sends as much as an
all-reduce (it reduces everything, then keeps its shard), twice the optimum.
"""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from infralens.distributed import (
    BytesSent,
    all_gather_bytes,
    all_to_all_bytes,
    reduce_scatter_bytes,
    ring_allreduce_bytes,
    run_ranks,
)

pytestmark = pytest.mark.upstream

HERE = Path(__file__).resolve()
NUMEL = 2**18  # 1 MiB of float32, divisible by every world size used here


def measure_collectives(rank, world_size):
    n = world_size
    ops = {
        "all_reduce": lambda: dist.all_reduce(torch.ones(NUMEL)),
        "all_gather": lambda: dist.all_gather_single(torch.empty(NUMEL), torch.ones(NUMEL // n)),
        "reduce_scatter": lambda: dist.reduce_scatter_single(torch.empty(NUMEL // n), torch.ones(NUMEL)),
        "all_to_all": lambda: dist.all_to_all_single(torch.empty(NUMEL), torch.ones(NUMEL)),
    }
    sent = {}
    for name, op in ops.items():
        dist.barrier()
        with BytesSent() as wire:
            op()
        sent[name] = wire.bytes
    return sent


@pytest.mark.parametrize("world_size", [2, 4])
def test_gloo_sends_the_ring_amounts(world_size):
    nbytes = NUMEL * 4
    expected = {
        "all_reduce": ring_allreduce_bytes(nbytes, world_size),
        "all_gather": all_gather_bytes(nbytes, world_size),
        "all_to_all": all_to_all_bytes(nbytes, world_size),
        # gloo's reduce-scatter: an all-reduce, then each rank keeps its shard
        "reduce_scatter": 2 * reduce_scatter_bytes(nbytes, world_size),
    }
    for rank, sent in enumerate(run_ranks(f"{HERE}:measure_collectives", world_size, timeout=120)):
        for op, want in expected.items():
            assert want <= sent[op] < want * 1.01, (rank, op, sent[op], want)  # headers add well under 1%
