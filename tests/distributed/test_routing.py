"""Top-k routing: gate weights by hand, the capacity rule against a queue simulation, the Switch loss's endpoints."""

import math

import pytest
import torch

from infralens.distributed import (
    capacity_mask,
    load_balancing_loss,
    make_experts,
    moe_reference,
    route_tokens,
    top_k_gating,
)


def test_gate_weights_by_hand():
    logits = [[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 0.5, 2.0]]
    experts, w, probs = top_k_gating(torch.tensor(logits), 2, renormalize=False)
    for t, row in enumerate(logits):
        z = sum(math.exp(v) for v in row)
        best = sorted(range(4), key=lambda e: -row[e])[:2]
        assert experts[t].tolist() == best
        assert w[t].tolist() == pytest.approx([math.exp(row[e]) / z for e in best], rel=1e-6)
        assert probs[t].sum().item() == pytest.approx(1.0)
    _, w_norm, _ = top_k_gating(torch.tensor(logits), 2, renormalize=True)
    assert torch.allclose(w_norm.sum(-1), torch.ones(2))
    assert torch.allclose(w_norm, w / w.sum(-1, keepdim=True))
    assert (w.sum(-1) < 1).all()  # without renormalisation the output is scaled down


def test_gating_runs_in_float32():
    logits = torch.randn(16, 8, dtype=torch.bfloat16)
    _, w, probs = top_k_gating(logits, 2, renormalize=True)
    assert w.dtype == probs.dtype == torch.float32


def queue_simulation(experts: list[list[int]], capacity: int) -> list[list[bool]]:
    """Experts take assignments first-come first-served: every first choice in token order, then second choices."""
    taken: dict[int, int] = {}
    kept = [[False] * len(row) for row in experts]
    for c in range(len(experts[0])):
        for t, row in enumerate(experts):
            e = row[c]
            if taken.get(e, 0) < capacity:
                taken[e] = taken.get(e, 0) + 1
                kept[t][c] = True
    return kept


@pytest.mark.parametrize(("T", "E", "k", "C"), [(50, 4, 1, 10), (64, 8, 2, 12), (200, 8, 2, 40), (30, 6, 3, 9)])
def test_capacity_matches_a_queue(T, E, k, C):
    g = torch.Generator().manual_seed(T + E)
    logits = torch.randn(T, E, generator=g) + torch.linspace(0, 2, E)  # skewed towards the last experts
    routing = route_tokens(logits, top_k=k, capacity=C, renormalize=True)
    assert routing.kept.tolist() == queue_simulation(routing.experts.tolist(), C)
    assert (routing.kept_load <= C).all()
    assert routing.load.sum() == T * k
    assert routing.dropped == T * k - routing.kept_load.sum()


def test_no_capacity_keeps_everything():
    routing = route_tokens(torch.randn(32, 4), top_k=2, capacity=None, renormalize=False)
    assert routing.kept.all() and routing.dropped == 0 and routing.unrouted_tokens == 0


def test_a_capacity_drop_is_silent():
    """The layer returns a tensor of the right shape either way; only the dropped tokens' rows change."""
    torch.manual_seed(0)
    x = torch.randn(40, 16)  # (T, D)
    logits = torch.randn(40, 4) + torch.tensor([2.0, 0, 0, 0])  # expert 0 is popular
    experts = make_experts(4, 16, 32)
    full = route_tokens(logits, top_k=2, capacity=None, renormalize=True)
    tight = route_tokens(logits, top_k=2, capacity=12, renormalize=True)
    with torch.no_grad():
        y_full, y_tight = moe_reference(x, full, experts), moe_reference(x, tight, experts)
    assert y_tight.shape == y_full.shape and tight.dropped > 0
    changed = (y_full - y_tight).abs().amax(dim=1) > 1e-6  # (T,)
    assert torch.equal(changed, (~tight.kept).any(dim=1))
    assert torch.equal((y_tight.abs().amax(dim=1) == 0), (~tight.kept).all(dim=1))  # unrouted: zero from the layer


def test_load_balancing_loss_endpoints():
    T, E = 1000, 8
    uniform = torch.full((T, E), 1 / E)
    spread = torch.arange(T).remainder(E).view(T, 1)
    assert load_balancing_loss(uniform, spread).item() == pytest.approx(1.0)
    two = torch.stack([spread[:, 0], (spread[:, 0] + 1) % E], dim=1)  # top-2, even
    assert load_balancing_loss(uniform, two).item() == pytest.approx(2.0)
    collapsed = torch.zeros(T, E)
    collapsed[:, 0] = 1
    assert load_balancing_loss(collapsed, torch.zeros(T, 1, dtype=torch.long)).item() == pytest.approx(E)
    # a random router sits between the two and the loss's gradient pushes probability off the loaded expert
    logits = torch.randn(T, E, requires_grad=True)
    probs = torch.softmax(logits + torch.tensor([3.0] + [0.0] * 7), -1)
    experts = probs.topk(1, -1).indices
    loss = load_balancing_loss(probs, experts)
    loss.backward()
    assert 1.0 < loss.item() < E
    assert logits.grad[:, 0].sum() > 0  # descending the loss lowers expert 0's logits


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: top_k_gating(torch.randn(4), 1, renormalize=False), r"logits must be a float tensor of shape"),
        (lambda: top_k_gating(torch.randn(4, 3), 4, renormalize=False), r"top_k must be <= the number of experts E=3"),
        (lambda: top_k_gating(torch.randn(4, 3), 0, renormalize=False), r"top_k must be >= 1, e\.g\. top_k=2"),
        (lambda: capacity_mask(torch.zeros(4, 1, dtype=torch.long), 4, 0), r"capacity must be >= 1, e\.g\. capacity="),
        (lambda: capacity_mask(torch.zeros(4, 1, dtype=torch.long), 0, 1), r"num_experts must be >= 1"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_top_k_may_take_every_expert():
    experts, weights, _ = top_k_gating(torch.randn(5, 3), top_k=3, renormalize=False)
    assert sorted(experts[0].tolist()) == [0, 1, 2] and torch.allclose(weights.sum(-1), torch.ones(5))
    with pytest.raises(ValueError, match="top_k must be <= the number of experts E=3"):
        top_k_gating(torch.randn(5, 3), top_k=4, renormalize=False)
