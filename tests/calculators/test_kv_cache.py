"""kv_cache_bytes against hand arithmetic and a cache of real tensors."""

import pytest
import torch

from infralens.calculators import kv_cache_bytes


def test_formula_by_hand():
    assert kv_cache_bytes(layers=2, kv_heads=3, head_dim=4, seq=5, batch=6, dtype="fp8") == 2 * 2 * 3 * 4 * 5 * 6 * 1
    assert kv_cache_bytes(layers=32, kv_heads=8, head_dim=128, seq=8192) == 2**30  # bf16 by default


@pytest.mark.parametrize(("dtype", "torch_dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_on_real_tensors(dtype, torch_dtype):
    L, K, d, S, B = 3, 2, 8, 17, 2
    cache = [(torch.empty(B, K, S, d, dtype=torch_dtype), torch.empty(B, K, S, d, dtype=torch_dtype)) for _ in range(L)]
    stored = sum(t.numel() * t.element_size() for kv in cache for t in kv)
    assert stored == kv_cache_bytes(layers=L, kv_heads=K, head_dim=d, seq=S, batch=B, dtype=dtype)


@pytest.mark.parametrize("name", ["layers", "kv_heads", "head_dim", "seq", "batch"])
def test_each_size_is_checked(name):
    kwargs = dict(layers=2, kv_heads=2, head_dim=4, seq=5, batch=1) | {name: 0}
    with pytest.raises(ValueError, match=rf"{name} must be >= 1, e\.g\. {name}="):
        kv_cache_bytes(**kwargs)


def test_unknown_dtype():
    with pytest.raises(ValueError, match=r"dtype must be one of .*e\.g\. dtype='bf16'; got 'fp64'"):
        kv_cache_bytes(layers=1, kv_heads=1, head_dim=1, seq=1, dtype="fp64")
