"""Lab 06 · Expert Parallel Routing. Run: python expert_routing.py

A router scores every token against every expert; each token goes to its
top-k experts, weighted by the softmax. Each expert has room for a fixed
number of tokens (its capacity); the rest are dropped without an error.
With experts spread over ranks, tokens travel to their expert's rank and
back with two all-to-alls, here on two real gloo processes.
"""

import torch

from infralens.distributed import (
    RENORMALIZES,
    expert_capacity,
    expert_parallel_moe,
    load_balancing_loss,
    make_experts,
    moe_reference,
    route_tokens,
    run_ranks,
)

# [1] Setup / contract
T, E, K, FACTOR = 4096, 8, 2, 1.25  # tokens, experts, top-k, factor
capacity = expert_capacity(T, E, top_k=K, capacity_factor=FACTOR)
g = torch.Generator().manual_seed(0)
skew = torch.linspace(0.6, -0.6, E)  # a router that prefers low experts
logits = torch.randn(T, E, generator=g) + skew  # (T, E)

# [2] Main transition
probs = torch.softmax(logits.float(), dim=-1)  # (T, E)
top_p, top_e = probs.topk(K, dim=-1)  # (T, K) each, best first
renormed = top_p / top_p.sum(dim=-1, keepdim=True)  # (T, K) sums to 1
routing = route_tokens(logits, top_k=K, capacity=capacity, renormalize=True)
assert torch.equal(routing.experts, top_e)
assert torch.allclose(routing.weights, renormed)
aux = load_balancing_loss(routing.probs, routing.experts)  # E sum f_i P_i


# [3] Interview hook
def moe_rank(rank, world_size):
    """One MoE layer on this rank: 64 tokens, 4 experts, 2 per rank."""
    experts = make_experts(4, 16, 32, seed=1)  # same weights everywhere
    gen = torch.Generator().manual_seed(10 + rank)
    x = torch.randn(64, 16, generator=gen)  # (T, D) this rank's tokens
    lg = torch.randn(64, 4, generator=gen)  # (T, E)
    r = route_tokens(lg, top_k=2, capacity=36, renormalize=True)
    mine = experts[2 * rank : 2 * rank + 2]  # experts 2r and 2r + 1
    with torch.no_grad():
        out, stats = expert_parallel_moe(x, r, mine)  # 2 all-to-alls
        ref = moe_reference(x, r, experts)  # one process, all experts
    err = (out - ref).abs().max().item()
    return err, stats, r.dropped


# [end]


def drops(factor: float) -> tuple[int, int, int]:
    c = expert_capacity(T, E, top_k=K, capacity_factor=factor)
    r = route_tokens(logits, top_k=K, capacity=c, renormalize=True)
    return c, r.dropped, r.unrouted_tokens


if __name__ == "__main__":
    print(f"Router: T={T} tokens, E={E} experts, top-{K}")
    print(f"  logits {tuple(logits.shape)}  (T, E)")
    print(f"  weights {tuple(routing.weights.shape)}  (T, K)")
    print(f"  capacity = ceil(K T / E x {FACTOR}) = {capacity}")

    print(f"\nLoad per expert: asked / kept (capacity {capacity})")
    asked, kept = routing.load.tolist(), routing.kept_load.tolist()
    for e in range(E):
        flag = "  full, drops" if asked[e] > capacity else ""
        print(f"  expert {e}  {asked[e]:>5} / {kept[e]:>5}{flag}")
    print(f"  assignments dropped: {routing.dropped} of {T * K}")
    print(f"  tokens with every choice dropped: {routing.unrouted_tokens}")
    print(f"  load-balancing loss: {aux.item():.4f} (even routing: K = {K})")

    print("\nCapacity factor against drops (same router)")
    print(f"  {'factor':>6} {'capacity':>9} {'dropped':>8} {'unrouted':>9}")
    for f in (1.0, 1.25, 1.5, 2.0):
        c, d, u = drops(f)
        print(f"  {f:>6} {c:>9} {d:>8} {u:>9}")

    print("\nTop-k weights of token 0 (renormalised or not)")
    print(f"  experts {top_e[0].tolist()}")
    print(f"  softmax values    {[round(v, 4) for v in top_p[0].tolist()]}")
    print(f"  renormalised      {[round(v, 4) for v in renormed[0].tolist()]}")
    for model, renorm in RENORMALIZES.items():
        print(f"  {model:<20} renormalises: {renorm}")

    print("\nExpert parallel on 2 gloo processes (run_ranks)")
    for rank, (err, stats, dropped) in enumerate(run_ranks(moe_rank, 2)):
        print(f"  rank {rank}: rows sent {stats.send_rows},", end=" ")
        print(f"received {stats.recv_rows}, dropped {dropped}")
        print(f"          bytes to the other rank {stats.bytes_to_others}")
        print(f"          max |EP - dense reference| = {err:.1e}")
