"""KVCache: append semantics, measured bytes equal to the calculator's formula, argument errors."""

import pytest
import torch

from infralens.calculators import kv_cache_bytes
from infralens.transformer import DecoderConfig, KVCache, TinyLlama


def test_append_along_the_sequence_axis():
    cache = KVCache()
    k0, v0 = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)
    k1, v1 = torch.randn(2, 3, 1, 8), torch.randn(2, 3, 1, 8)
    cache.update(0, k0, v0)
    keys, values = cache.update(0, k1, v1)
    assert torch.equal(keys, torch.cat([k0, k1], 2)) and torch.equal(values, torch.cat([v0, v1], 2))
    assert cache.seq_len == 5 and cache.num_layers == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_measured_bytes_equal_the_formula(dtype):
    config = DecoderConfig(num_hidden_layers=3, num_key_value_heads=1)
    model = TinyLlama(config).to(dtype).eval()
    cache = KVCache()
    with torch.no_grad():
        model(torch.randint(0, 96, (2, 7)), cache=cache)
        model(torch.randint(0, 96, (2, 1)), cache=cache)
    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    assert all(t.dtype == dtype for t in cache.keys + cache.values)
    assert cache.nbytes == kv_cache_bytes(layers=3, kv_heads=1, head_dim=config.dh, seq=8, batch=2, dtype=name)


def test_empty_cache():
    assert KVCache().seq_len == 0 and KVCache().nbytes == 0


def test_errors():
    cache = KVCache()
    with pytest.raises(ValueError, match=r"key must have 4 axes \(B, H_kv, S, Dh\)"):
        cache.update(0, torch.zeros(3, 4, 5), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="layer_idx must be at most 0"):
        cache.update(1, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
