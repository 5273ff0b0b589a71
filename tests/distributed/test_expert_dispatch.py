"""Expert-parallel dispatch and combine on real gloo processes equal the dense per-token reference.

Each rank routes its own tokens; the ranks' functions live at the top level of
this file and are started by ``run_ranks`` as ``"<this file>:<name>"``.
"""

from pathlib import Path

import pytest
import torch

from infralens.distributed import expert_parallel_moe, make_experts, moe_reference, route_tokens, run_ranks

HERE = Path(__file__).resolve()
T, D, HIDDEN = 32, 8, 16


def tokens_of(rank: int, E: int):
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(T, D, generator=g)  # (T, D)
    logits = torch.randn(T, E, generator=g) + torch.linspace(1.0, 0.0, E)  # (T, E), low experts favoured
    return x, logits


def moe_rank(rank, world_size, E, capacity):
    experts = make_experts(E, D, HIDDEN, seed=7)  # every rank builds all, keeps its E / W
    per = E // world_size
    x, logits = tokens_of(rank, E)
    routing = route_tokens(logits, top_k=2, capacity=capacity, renormalize=True)
    with torch.no_grad():
        out, stats = expert_parallel_moe(x, routing, experts[rank * per : (rank + 1) * per])
    return {"out": out, "stats": stats, "dropped": routing.dropped}


def wrong_expert_count(rank, world_size):
    experts = make_experts(4, D, HIDDEN)
    routing = route_tokens(tokens_of(rank, 4)[1], top_k=1, capacity=None, renormalize=False)
    expert_parallel_moe(tokens_of(rank, 4)[0], routing, experts[:1])


@pytest.mark.parametrize(("world", "E", "capacity"), [(2, 4, 12), (4, 8, 6)])
def test_dispatch_combine_equals_the_dense_reference(world, E, capacity):
    results = run_ranks(f"{HERE}:moe_rank", world, args=(E, capacity), timeout=120)
    experts = make_experts(E, D, HIDDEN, seed=7)
    per = E // world
    received = torch.zeros(world, dtype=torch.long)
    for rank, res in enumerate(results):
        x, logits = tokens_of(rank, E)
        routing = route_tokens(logits, top_k=2, capacity=capacity, renormalize=True)
        with torch.no_grad():
            ref = moe_reference(x, routing, experts)
        assert torch.allclose(res["out"], ref, atol=1e-6)
        assert res["dropped"] == routing.dropped > 0  # the capacity bites, and silently
        owners = routing.experts[routing.kept] // per
        assert res["stats"].send_rows == tuple(torch.bincount(owners, minlength=world).tolist())
        assert res["stats"].bytes_to_others == (owners != rank).sum().item() * D * 4
        received += torch.bincount(owners, minlength=world)
    assert tuple(received.tolist()) == tuple(sum(r["stats"].recv_rows) for r in results)


def test_experts_must_split_evenly():
    from infralens.distributed import RankError

    with pytest.raises(RankError, match=r"local_experts must hold E / world_size = 4 / 2 experts per rank"):
        run_ranks(f"{HERE}:wrong_expert_count", 2, timeout=60)


def moe_in_a_subgroup(rank, world_size):
    # ranks 1 and 2 hold the experts (two each); every token prefers experts 0 and 1, so the second
    # member of the group receives no row at all
    group = torch.distributed.new_group([1, 2])
    if rank == 0:
        return None
    experts = make_experts(4, D, HIDDEN, seed=7)
    me = torch.distributed.get_rank(group)
    x, logits = tokens_of(rank, 4)
    routing = route_tokens(logits + torch.tensor([20.0, 20.0, 0.0, 0.0]), top_k=2, capacity=None, renormalize=True)
    with torch.no_grad():
        out, stats = expert_parallel_moe(x, routing, experts[2 * me : 2 * me + 2], group=group)
        ref = moe_reference(x, routing, experts)
    return {"equal": torch.allclose(out, ref, atol=1e-6), "send_rows": stats.send_rows}


def test_dispatch_inside_a_subgroup_with_an_idle_rank():
    results = run_ranks(f"{HERE}:moe_in_a_subgroup", 3, timeout=30)
    assert results[0] is None
    assert [r["equal"] for r in results[1:]] == [True, True]
    assert [r["send_rows"] for r in results[1:]] == [(2 * T, 0), (2 * T, 0)]  # every row to group rank 0
