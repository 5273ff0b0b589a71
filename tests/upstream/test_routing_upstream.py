"""infralens.distributed routing against transformers' own routers and auxiliary losses (tiny random configs).

* RENORMALIZES: each model's router, run on the same hidden states, gives the
  weights of ``top_k_gating`` with that model's renormalisation, and a Qwen
  config with ``norm_topk_prob=True`` switches it on;
* the capacity: Switch Transformers' router drops exactly the tokens
  ``capacity_mask`` drops (one group = one sequence);
* the load-balancing loss equals both of transformers' implementations.
"""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from transformers import (  # noqa: E402
    MixtralConfig,
    OlmoeConfig,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
    SwitchTransformersConfig,
)
from transformers.models.mixtral import modeling_mixtral  # noqa: E402
from transformers.models.olmoe import modeling_olmoe  # noqa: E402
from transformers.models.qwen2_moe import modeling_qwen2_moe  # noqa: E402
from transformers.models.qwen3_moe import modeling_qwen3_moe  # noqa: E402
from transformers.models.switch_transformers import modeling_switch_transformers  # noqa: E402

from infralens.distributed import (  # noqa: E402
    RENORMALIZES,
    capacity_mask,
    load_balancing_loss,
    moe_reference,
    route_tokens,
    top_k_gating,
)

pytestmark = [pytest.mark.upstream, pytest.mark.filterwarnings("ignore::UserWarning")]

HIDDEN, EXPERTS, TOP_K = 16, 8, 2
ROUTERS = {
    "mixtral": (MixtralConfig, dict(num_local_experts=EXPERTS), modeling_mixtral.MixtralTopKRouter),
    "qwen2_moe": (Qwen2MoeConfig, dict(num_experts=EXPERTS), modeling_qwen2_moe.Qwen2MoeTopKRouter),
    "qwen3_moe": (Qwen3MoeConfig, dict(num_experts=EXPERTS), modeling_qwen3_moe.Qwen3MoeTopKRouter),
    "olmoe": (OlmoeConfig, dict(num_experts=EXPERTS), modeling_olmoe.OlmoeTopKRouter),
}


def router(model_type: str, **overrides):
    config_cls, sizes, router_cls = ROUTERS[model_type]
    config = config_cls(hidden_size=HIDDEN, num_experts_per_tok=TOP_K, **sizes, **overrides)
    r = router_cls(config)
    with torch.no_grad():
        r.weight.copy_(torch.randn(r.weight.shape, generator=torch.Generator().manual_seed(1)))
    return config, r


@pytest.mark.parametrize("model_type", list(ROUTERS))
def test_default_renormalisation_of_each_model(model_type):
    config, r = router(model_type)
    x = torch.randn(32, HIDDEN, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, weights, indices = r(x)
    experts, ours, _ = top_k_gating(logits, TOP_K, renormalize=RENORMALIZES[model_type])
    assert torch.equal(indices, experts)
    assert torch.allclose(weights.float(), ours, atol=1e-6)
    sums = weights.sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums)) == RENORMALIZES[model_type]
    assert getattr(config, "norm_topk_prob", True) == RENORMALIZES[model_type]


@pytest.mark.parametrize("model_type", ["qwen2_moe", "qwen3_moe", "olmoe"])
def test_norm_topk_prob_switches_it_on(model_type):
    _, r = router(model_type, norm_topk_prob=True)
    x = torch.randn(32, HIDDEN, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, weights, _ = r(x)
    assert torch.allclose(weights.float(), top_k_gating(logits, TOP_K, renormalize=True)[1], atol=1e-6)


def test_switch_router_drops_what_capacity_mask_drops():
    C, B, S = 3, 2, 10
    config = SwitchTransformersConfig(d_model=HIDDEN, num_experts=4, expert_capacity=C, router_jitter_noise=0.0)
    r = modeling_switch_transformers.SwitchTransformersTop1Router(config).eval()
    with torch.no_grad():
        r.classifier.weight.copy_(torch.randn(4, HIDDEN, generator=torch.Generator().manual_seed(4)))
        x = torch.randn(B, S, HIDDEN, generator=torch.Generator().manual_seed(5))
        expert_index, router_probs, router_logits = r(x)  # (B, S, E) one-hot, masked; (B, S, 1); (B, S, E)
    kept_upstream = expert_index.sum(-1).bool()  # (B, S)
    assert not kept_upstream.all()  # the tight capacity dropped something
    for b in range(B):  # Switch's group is one sequence
        experts, w, _ = top_k_gating(router_logits[b], 1, renormalize=RENORMALIZES["switch_transformers"])
        assert torch.equal(capacity_mask(experts, 4, C)[:, 0], kept_upstream[b])
        assert torch.allclose(w[:, 0], router_probs[b, :, 0], atol=1e-6)


def test_load_balancing_loss_equals_transformers():
    logits = torch.randn(64, EXPERTS, generator=torch.Generator().manual_seed(6))
    probs = torch.softmax(logits, -1)
    upstream_topk = modeling_mixtral.load_balancing_loss_func((logits,), EXPERTS, TOP_K)
    assert torch.allclose(load_balancing_loss(probs, probs.topk(TOP_K, -1).indices), upstream_topk, atol=1e-6)
    top1 = probs.argmax(-1)
    upstream_switch = modeling_switch_transformers.load_balancing_loss_func(probs[None], top1[None])
    assert torch.allclose(load_balancing_loss(probs, top1[:, None]), upstream_switch, atol=1e-6)


def test_mixtral_block_is_dropless_and_renormalised():
    """MixtralSparseMoeBlock's output is moe_reference with no capacity, renormalised top-2, its own experts."""
    config = MixtralConfig(
        hidden_size=HIDDEN, intermediate_size=24, num_local_experts=EXPERTS, num_experts_per_tok=TOP_K
    )
    block = modeling_mixtral.MixtralSparseMoeBlock(config).eval()
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        x = torch.randn(1, 40, HIDDEN, generator=g)  # (B, S, D)
        out = block(x)  # (B, S, D)
        logits = torch.nn.functional.linear(x[0], block.gate.weight)  # (T, E)
        ex = block.experts

        def expert(e):
            def ffn(h):
                gate, up = torch.nn.functional.linear(h, ex.gate_up_proj[e]).chunk(2, dim=-1)
                return torch.nn.functional.linear(ex.act_fn(gate) * up, ex.down_proj[e])

            return ffn

        routing = route_tokens(logits, top_k=TOP_K, capacity=None, renormalize=True)
        ref = moe_reference(x[0], routing, [expert(e) for e in range(EXPERTS)])
    assert torch.allclose(out[0], ref, atol=1e-5)
    tight = route_tokens(logits, top_k=TOP_K, capacity=6, renormalize=True)  # what a capacity would change
    assert tight.dropped > 0 and not torch.allclose(
        out[0], moe_reference(x[0], tight, [expert(e) for e in range(EXPERTS)])
    )


@pytest.mark.parametrize("model_type", list(ROUTERS))
def test_a_bfloat16_router_takes_its_softmax_in_float32(model_type):
    _, r = router(model_type)
    r = r.to(torch.bfloat16)
    x = torch.randn(64, HIDDEN, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    with torch.no_grad():
        logits, weights, indices = r(x)
    assert logits.dtype == torch.bfloat16
    experts, ours, probs = top_k_gating(logits, TOP_K, renormalize=RENORMALIZES[model_type])
    assert probs.dtype == torch.float32 and torch.equal(indices, experts)
    # the weights are the float32 softmax's; Mixtral hands them on in float32, the others round to bf16
    assert weights.dtype == (torch.float32 if model_type == "mixtral" else torch.bfloat16)
    assert torch.allclose(weights.float(), ours.to(weights.dtype).float(), atol=1e-6)
