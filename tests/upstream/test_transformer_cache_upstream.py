"""The KV cache: transformers' DynamicCache against full recomputation, against our TinyLlama, and its bytes.

* cached prefill + decode gives the logits of recomputing the whole sequence;
* our TinyLlama, loaded with the same weights, gives the same logits and caches
  the same tensors, ``(B, H_kv, S, Dh)`` per layer, keys after RoPE;
* the cache tensors' bytes equal :func:`infralens.calculators.kv_cache_bytes`,
  2 GiB for Llama-2-7B at 4,096 tokens in bfloat16 (the model built on the
  meta device, so nothing is allocated).
"""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM  # noqa: E402

from infralens.calculators import kv_cache_bytes  # noqa: E402
from infralens.transformer import LLAMA2_7B, KVCache  # noqa: E402

from ._tiny_decoder import TINY, llama_config, model_pair  # noqa: E402

pytestmark = [pytest.mark.upstream]


def ids(batch=2, seq=12, seed=3):
    return torch.randint(0, TINY.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def hf_cached_logits(hf, x, prompt_len):
    """Prefill ``prompt_len`` tokens, then decode the rest one at a time with a DynamicCache."""
    cache = DynamicCache(config=hf.config)
    steps = [hf(x[:, :prompt_len], past_key_values=cache, use_cache=True).logits]  # (B, P, V)
    for t in range(prompt_len, x.shape[1]):
        steps.append(hf(x[:, t : t + 1], past_key_values=cache, use_cache=True).logits)  # (B, 1, V)
    return torch.cat(steps, dim=1), cache


def test_cached_decoding_equals_full_recompute_in_transformers():
    hf, _ = model_pair()
    x = ids()
    with torch.no_grad():
        full = hf(x).logits  # (B, S, V)
    cached, cache = hf_cached_logits(hf, x, prompt_len=5)
    assert torch.allclose(cached, full, atol=1e-5)
    assert cache.get_seq_length() == x.shape[1]


@pytest.mark.parametrize("eps", [None, 0.5])
def test_our_model_equals_transformers_on_the_same_weights(eps):
    # eps 0.5: large enough that every RMSNorm's epsilon shows in the logits
    hf, ours = model_pair(TINY if eps is None else dataclasses.replace(TINY, rms_norm_eps=eps))
    x = ids()
    with torch.no_grad():
        assert torch.allclose(ours(x), hf(x).logits, atol=1e-5)
    if eps is not None:
        with torch.no_grad():
            assert not torch.allclose(model_pair()[1](x), hf(x).logits, atol=1e-3)  # the default eps is not it


def test_our_cache_holds_what_dynamic_cache_holds():
    hf, ours = model_pair()
    x = ids()
    _, theirs = hf_cached_logits(hf, x, prompt_len=5)
    mine = KVCache()
    with torch.no_grad():
        ours(x[:, :5], cache=mine)
        for t in range(5, x.shape[1]):
            ours(x[:, t : t + 1], cache=mine)
    B, S = x.shape
    for layer in range(TINY.num_hidden_layers):
        k, v = theirs.layers[layer].keys, theirs.layers[layer].values
        assert k.shape == (B, TINY.num_key_value_heads, S, TINY.dh)  # per KV head, not per query head
        assert torch.allclose(mine.keys[layer], k, atol=1e-5) and torch.allclose(mine.values[layer], v, atol=1e-5)
    assert mine.nbytes == sum(t.numel() * t.element_size() for la in theirs.layers for t in (la.keys, la.values))


def test_cached_keys_carry_rope():
    """The cache holds k_proj's output rotated to its position; values are stored as projected."""
    hf, _ = model_pair()
    x = ids(batch=1)
    _, cache = hf_cached_logits(hf, x, prompt_len=x.shape[1])
    layer0 = hf.model.layers[0]
    with torch.no_grad():
        h = layer0.input_layernorm(hf.model.embed_tokens(x))  # (B, S, D)
        B, S, _ = h.shape
        k = layer0.self_attn.k_proj(h).view(B, S, -1, TINY.dh).transpose(1, 2)  # (B, H_kv, S, Dh) unrotated
        v = layer0.self_attn.v_proj(h).view(B, S, -1, TINY.dh).transpose(1, 2)
        cos, sin = hf.model.rotary_emb(h, torch.arange(S)[None])
    rotated, _ = transformers.models.llama.modeling_llama.apply_rotary_pos_emb(k, k, cos, sin)
    keys = cache.layers[0].keys
    assert torch.allclose(keys, rotated, atol=1e-5)
    assert torch.allclose(keys[:, :, 0], k[:, :, 0], atol=1e-6)  # position 0: rotation by angle 0
    assert not torch.allclose(keys[:, :, 1:], k[:, :, 1:], atol=1e-3)
    assert torch.allclose(cache.layers[0].values, v, atol=1e-6)


def test_greedy_generation_equals_transformers_generate():
    hf, ours = model_pair()
    prompt = ids(batch=1, seq=4)
    hf.generation_config.eos_token_id = None  # LlamaConfig's eos id 2 would stop it early; ours has no stop token
    with torch.no_grad():
        theirs = hf.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert theirs.shape == (1, 4 + 6)
    assert torch.equal(ours.generate(prompt, 6), theirs)


@pytest.mark.parametrize(("kv_heads", "gib"), [(32, 2.0), (8, 0.5), (1, 1 / 16)])
def test_cache_bytes_of_a_7b_model_on_the_meta_device(kv_heads, gib):
    config = LlamaConfig(**LLAMA2_7B | {"num_key_value_heads": kv_heads})
    with torch.device("meta"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    cache = DynamicCache(config=config)
    with torch.no_grad():
        model.model(torch.zeros(1, 4096, dtype=torch.long, device="meta"), past_key_values=cache, use_cache=True)
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    assert all(t.shape == (1, kv_heads, 4096, 128) and t.dtype == torch.bfloat16 for t in tensors)
    measured = sum(t.numel() * t.element_size() for t in tensors)
    assert measured == kv_cache_bytes(layers=32, kv_heads=kv_heads, head_dim=128, seq=4096, dtype="bf16")
    assert measured == gib * 2**30


def test_tiny_config_matches():
    assert llama_config().num_key_value_heads == TINY.num_key_value_heads
