"""TinyLlama: cached decoding equals recomputation, its size is llama_param_count, its attention is GQA with RoPE.

The same model against transformers' LlamaForCausalLM on shared weights runs in
tests/upstream/test_transformer_cache_upstream.py.
"""

import pytest
import torch

from infralens.transformer import DecoderConfig, KVCache, TinyLlama, llama_param_count

CONFIGS = {
    "gqa": DecoderConfig(),
    "mha": DecoderConfig(num_key_value_heads=4),
    "mqa-tied": DecoderConfig(num_key_value_heads=1, tie_word_embeddings=True),
    "head-dim": DecoderConfig(num_attention_heads=2, num_key_value_heads=2, head_dim=24),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_numel_is_llama_param_count(name):
    config = CONFIGS[name]
    assert sum(p.numel() for p in TinyLlama(config).parameters()) == llama_param_count(**config.count_fields())


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_decoding_equals_full_recompute(name):
    torch.manual_seed(0)
    model = TinyLlama(CONFIGS[name]).eval()
    ids = torch.randint(0, 96, (2, 9))
    with torch.no_grad():
        full = model(ids)  # (B, S, V)
        cache = KVCache()
        chunks = [model(ids[:, :4], cache=cache), model(ids[:, 4:6], cache=cache)]  # prefill, a 2-token chunk
        chunks += [model(ids[:, t : t + 1], cache=cache) for t in range(6, 9)]  # decode steps
    assert torch.allclose(torch.cat(chunks, 1), full, atol=1e-5)
    config = CONFIGS[name]
    assert cache.keys[0].shape == (2, config.num_key_value_heads, 9, config.dh)
    assert cache.num_layers == config.num_hidden_layers


def test_attention_is_causal():
    torch.manual_seed(0)
    model = TinyLlama(DecoderConfig()).eval()
    ids = torch.randint(0, 96, (1, 8))
    changed = ids.clone()
    changed[0, 5] = (ids[0, 5] + 1) % 96
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6) and not torch.allclose(a[:, 5:], b[:, 5:])


def test_positions_matter():
    """RoPE: the same token pair in another order gives other logits (without it attention is order-blind)."""
    torch.manual_seed(0)
    model = TinyLlama(DecoderConfig()).eval()
    with torch.no_grad():
        ab, ba = model(torch.tensor([[7, 9, 3]])), model(torch.tensor([[9, 7, 3]]))
    assert not torch.allclose(ab[:, -1], ba[:, -1], atol=1e-4)


def test_generate_is_greedy_decoding_of_the_full_model():
    torch.manual_seed(0)
    model = TinyLlama(DecoderConfig()).eval()
    prompt = torch.randint(0, 96, (2, 3))
    ids = prompt
    with torch.no_grad():
        for _ in range(5):  # no cache: recompute everything each step
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(model.generate(prompt, 5), ids)


def test_tied_head_is_the_embedding_table():
    model = TinyLlama(CONFIGS["mqa-tied"])
    assert model.lm_head.weight is model.model.embed_tokens.weight


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"num_key_value_heads": 3}, ["num_attention_heads=4", "num_key_value_heads=3", "2 or 4"]),
        ({"hidden_size": 30}, ["hidden_size=30", "head_dim"]),
        ({"vocab_size": 0}, ["vocab_size", ">= 1"]),
    ],
)
def test_config_errors(changes, words):
    with pytest.raises(ValueError) as err:
        DecoderConfig(**changes)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_input_errors():
    model = TinyLlama(DecoderConfig())
    with pytest.raises(ValueError, match=r"input_ids must be integer token ids of shape \(B, S\)"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 0)


def test_generate_feeds_back_all_but_the_last_new_token():
    # one prefill and max_new_tokens - 1 decode steps: the last token is returned, never run
    model = TinyLlama(DecoderConfig()).eval()
    calls = []
    model.register_forward_hook(lambda module, args, out: calls.append(out.shape[1]))
    cache = KVCache()
    with torch.no_grad():
        out = model.generate(torch.tensor([[1, 2, 3]]), 4, cache=cache)
    assert out.shape == (1, 7) and calls == [3, 1, 1, 1]
    assert cache.seq_len == 3 + 4 - 1
