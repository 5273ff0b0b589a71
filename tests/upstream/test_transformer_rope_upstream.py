"""infralens.transformer's RoPE against transformers' Llama: inverse frequencies, rotate_half, scaling, the cache.

``apply_rope(layout="half")`` must be transformers' ``apply_rotary_pos_emb``
with the cos and sin of ``LlamaRotaryEmbedding``; the interleaved layout must
differ from it and agree after the channel permutation; the linear and NTK
scalings must be transformers' ``linear`` and ``dynamic`` RoPE types; and the
keys transformers keeps in its cache must be the rotated ones.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers.cache_utils import DynamicCache  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.llama.modeling_llama import (  # noqa: E402
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
    rotate_half,
)

from infralens.transformer import (  # noqa: E402
    MultiHeadAttention,
    apply_rope,
    interleaved_rows_to_half,
    interleaved_to_half,
    rope_angles,
    rope_inv_freq,
    rope_scaled_inv_freq,
    split_heads,
)

from ._tiny_llama import tiny_config, tiny_pair  # noqa: E402

pytestmark = [pytest.mark.upstream]


@pytest.mark.parametrize(("head_dim", "theta"), [(8, 10000.0), (64, 10000.0), (128, 500000.0)])
def test_inv_freq_matches_llama_rotary_embedding(head_dim, theta):
    cfg = tiny_config("mha", rope_theta=theta)
    cfg.head_dim = head_dim
    assert torch.allclose(rope_inv_freq(head_dim, theta), LlamaRotaryEmbedding(cfg).inv_freq, rtol=1e-6, atol=0)


@pytest.mark.parametrize("per_sample", [False, True])
def test_half_layout_is_apply_rotary_pos_emb(per_sample):
    cfg = tiny_config("gqa")  # head_dim 8
    q, k = torch.randn(2, 2, 4, 7, 8).unbind(0)  # (B, H, S, Dh)
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 2, 3, 4]]) if per_sample else torch.arange(7)[None]
    cos, sin = LlamaRotaryEmbedding(cfg)(q, position_ids)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    positions = position_ids if per_sample else position_ids[0]
    assert torch.allclose(apply_rope(q, positions), q_ref, atol=1e-6)
    assert torch.allclose(apply_rope(k, positions), k_ref, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_llama_rope_angles_are_float32_whatever_the_dtype(dtype):
    """LlamaRotaryEmbedding multiplies positions by inv_freq in float32, then casts cos and sin to x's dtype."""
    cfg = tiny_config("mha")
    cfg.head_dim = 128
    ids = torch.tensor([[4000]])
    rotary = LlamaRotaryEmbedding(cfg)
    cos, _ = rotary(torch.zeros(1, dtype=dtype), ids)
    assert cos.dtype == dtype and rotary.inv_freq.dtype == torch.float32
    theta32 = ids[..., None].float() * rotary.inv_freq  # the product in float32
    assert torch.equal(cos, torch.cat([theta32, theta32], dim=-1).cos().to(dtype))
    assert torch.allclose(theta32, rope_angles(ids, 128), rtol=1e-6, atol=0)  # our float32 angles
    if dtype == torch.float64:
        exact = rope_angles(ids, 128, dtype=torch.float64)
        error = (torch.cat([exact, exact], dim=-1).cos() - cos).abs().max().item()
        assert 1e-6 < error < 1e-3  # float32 angles at position 4000: visible in float64


def test_rotate_half_pairs_channel_i_with_i_plus_half():
    x = torch.arange(8.0)
    assert rotate_half(x).tolist() == [-4.0, -5.0, -6.0, -7.0, 0.0, 1.0, 2.0, 3.0]


def test_interleaved_layout_differs_and_agrees_after_the_permutation():
    cfg = tiny_config("mha")
    x = torch.randn(1, 2, 6, 8)
    ids = torch.arange(6)[None]
    cos, sin = LlamaRotaryEmbedding(cfg)(x, ids)
    llama, _ = apply_rotary_pos_emb(x, x, cos, sin)
    interleaved = apply_rope(x, ids[0], layout="interleaved")
    assert not torch.allclose(interleaved, llama, atol=1e-2)  # same weights, other layout: other numbers
    perm = interleaved_to_half(8)
    llama_on_permuted, _ = apply_rotary_pos_emb(x[..., perm], x[..., perm], cos, sin)
    assert torch.allclose(interleaved[..., perm], llama_on_permuted, atol=1e-6)


def test_interleaved_checkpoint_runs_in_llama_after_permuting_q_and_k_rows():
    """Weights trained with interleaved RoPE: wrong in LlamaAttention as they are, right after the row permutation."""
    _, theirs, rope, cfg = tiny_pair("gqa", attn="sdpa", dtype=torch.float32)  # no mask: SDPA's is_causal
    torch.manual_seed(1)
    trained = MultiHeadAttention(32, 4, kv_heads=2, rope_base=10000.0, rope_layout="interleaved")
    x = torch.randn(1, 7, 32)
    ids = torch.arange(7)[None]
    with torch.no_grad():
        expected = trained(x)
        theirs.load_state_dict(trained.state_dict())  # loaded as is
        as_is, _ = theirs(x, position_embeddings=rope(x, ids), attention_mask=None)
        converted = {
            name: interleaved_rows_to_half(w, cfg.head_dim) if name in ("q_proj.weight", "k_proj.weight") else w
            for name, w in trained.state_dict().items()
        }
        theirs.load_state_dict(converted)
        after, _ = theirs(x, position_embeddings=rope(x, ids), attention_mask=None)
    assert not torch.allclose(as_is, expected, atol=1e-2)
    assert torch.allclose(after, expected, atol=1e-5)


def test_linear_scaling_is_transformers_linear_rope():
    cfg = tiny_config("mha", rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0})
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["linear"](cfg)
    assert attention_factor == 1.0
    assert torch.allclose(rope_scaled_inv_freq(8, factor=4.0), inv_freq, rtol=1e-6, atol=0)
    assert torch.allclose(LlamaRotaryEmbedding(cfg).inv_freq, inv_freq)


def test_ntk_scaling_is_transformers_dynamic_rope_at_its_matching_length():
    """Dynamic NTK raises the base by (factor s / L - (factor - 1)) ** (d / (d - 2)): at s = 1.5 L, factor 2, by 2."""
    cfg = tiny_config("mha", rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0})
    inv_freq, _ = ROPE_INIT_FUNCTIONS["dynamic"](cfg, seq_len=96)  # max_position_embeddings = 64
    assert torch.allclose(rope_scaled_inv_freq(8, factor=2.0, method="ntk"), inv_freq, rtol=1e-6, atol=0)
    within, _ = ROPE_INIT_FUNCTIONS["dynamic"](cfg, seq_len=64)  # inside the trained context: unscaled
    assert torch.allclose(rope_inv_freq(8), within, rtol=1e-6, atol=0)


def test_dynamic_cache_holds_rotated_keys_and_unrotated_values():
    ours, theirs, rope, cfg = tiny_pair("gqa", dtype=torch.float32)
    x = torch.randn(1, 5, cfg.hidden_size)
    ids = torch.arange(5)[None]
    cache = DynamicCache(config=cfg)
    with torch.no_grad():
        theirs(x, position_embeddings=rope(x, ids), attention_mask=None, past_key_values=cache)
        raw_k = split_heads(ours.k_proj(x), cfg.num_key_value_heads)  # (B, H_kv, S, Dh) before RoPE
        raw_v = split_heads(ours.v_proj(x), cfg.num_key_value_heads)
    cached_k, cached_v = cache.layers[0].keys, cache.layers[0].values
    assert cached_k.shape == (1, 2, 5, 8)  # (B, H_kv, S, Dh): per KV head, not per query head
    assert torch.allclose(cached_k, apply_rope(raw_k, ids[0]), atol=1e-6)
    assert not torch.allclose(cached_k, raw_k, atol=1e-3)
    assert torch.equal(cached_v, raw_v)


def _rope_llama(**extra):
    """A one-layer LlamaForCausalLM with Llama-sized heads (head_dim 128, rope_theta 10000)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=256,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=128,
        max_position_embeddings=8192,
        **extra,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def test_model_to_bf16_rounds_inv_freq_and_the_angles_drift(tmp_path):
    """``inv_freq`` is a non-persistent buffer: loading in bf16 keeps it float32, ``model.to(bf16)`` rounds it.

    The forward upcasts the buffer to float32 before the product, which cannot undo
    the rounding: the cast model's cos and sin are those of the bf16-rounded
    frequencies, and drift from the float32 model's with the position.
    """
    from transformers import LlamaForCausalLM

    model = _rope_llama()
    rotary = model.model.rotary_emb
    assert not any("inv_freq" in name for name in model.state_dict())  # persistent=False: not saved
    assert rotary.inv_freq.dtype == torch.float32
    model.save_pretrained(tmp_path)
    loaded = LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)  # built in bf16, not cast
    assert loaded.model.embed_tokens.weight.dtype == torch.bfloat16
    assert loaded.model.rotary_emb.inv_freq.dtype == torch.float32  # the buffer is recomputed in float32
    assert torch.equal(loaded.model.rotary_emb.inv_freq, rotary.inv_freq)
    assert torch.allclose(rotary.inv_freq, rope_inv_freq(128), rtol=1e-6, atol=0)

    cast = _rope_llama().to(torch.bfloat16)  # nn.Module.to casts every floating buffer, persistent or not
    rounded = cast.model.rotary_emb.inv_freq
    assert rounded.dtype == torch.bfloat16
    assert torch.equal(rounded, rotary.inv_freq.to(torch.bfloat16))
    assert torch.equal(rounded, rope_inv_freq(128).to(torch.bfloat16))  # the page's `bf`, bit for bit

    ids = torch.arange(8192)[None]
    x = torch.zeros(1, dtype=torch.bfloat16)
    cos_cast, sin_cast = cast.model.rotary_emb(x, ids)
    cos_f32, _ = rotary(x, ids)
    theta = ids[..., None].float() * rounded.float()  # float32 product of the rounded frequencies
    assert torch.equal(cos_cast, torch.cat([theta, theta], -1).cos().to(torch.bfloat16))
    assert torch.equal(sin_cast, torch.cat([theta, theta], -1).sin().to(torch.bfloat16))
    gap = (cos_cast.float() - cos_f32.float()).abs().amax(-1)[0]  # (S,): worst pair per position
    assert gap[:8].max() < 0.01  # near the start: within bf16's rounding of cos itself
    assert gap[100] > 0.1 and gap[1000] > 0.5  # the page's 82 and 818: off by 0.1 and 1 radian
