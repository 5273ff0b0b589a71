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


def all_to_all_autograd_facts(rank, world_size):
    """all_to_all_single in torch.distributed (no autograd) and in torch.distributed.nn.functional (autograd)."""
    import torch.distributed.nn.functional as dist_nn

    from infralens.distributed import expert_parallel_moe, make_experts, route_tokens

    x = torch.arange(4.0).add(10 * rank).requires_grad_()  # (4,): 2 values to each rank
    out = torch.empty(4)
    dist.all_to_all_single(out, x)
    plain = out.grad_fn is None and not out.requires_grad
    y = dist_nn.all_to_all_single(torch.empty(4), x)
    weight = torch.arange(1.0, 5.0) + 10 * rank  # dL/dy on this rank
    (y * weight).sum().backward()
    # the library's dispatch, as a training step would call it: do expert weights get a gradient?
    experts = make_experts(2, 4, 8, seed=0)
    g = torch.Generator().manual_seed(rank)
    tokens = torch.randn(6, 4, generator=g, requires_grad=True)  # (T, D)
    routing = route_tokens(torch.randn(6, 2, generator=g), top_k=1, capacity=None, renormalize=False)
    moe_out, _ = expert_parallel_moe(tokens, routing, experts[rank : rank + 1])
    return {
        "plain_detached": plain,
        "x_grad": x.grad.tolist(),
        "moe_out_has_history": moe_out.requires_grad,
        "inputs_require_grad": tokens.requires_grad and all(p.requires_grad for p in experts.parameters()),
    }


@pytest.fixture(scope="module")
def all_to_all_autograd():
    return run_ranks(f"{HERE}:all_to_all_autograd_facts", 2, timeout=120)


def test_all_to_all_single_is_outside_autograd_and_its_nn_functional_twin_sends_gradients_back(all_to_all_autograd):
    r0, r1 = all_to_all_autograd
    assert r0["plain_detached"] and r1["plain_detached"]  # the output has no history: backward stops there
    # backward is the all-to-all with the splits swapped: rank r's block j comes from rank j's block r of dL/dy
    assert r0["x_grad"] == [1.0, 2.0, 11.0, 12.0]
    assert r1["x_grad"] == [3.0, 4.0, 13.0, 14.0]


def test_the_librarys_dispatch_is_forward_only(all_to_all_autograd):
    for f in all_to_all_autograd:  # tokens and expert weights require grad, the layer's output has no history
        assert f["inputs_require_grad"] and not f["moe_out_has_history"]
