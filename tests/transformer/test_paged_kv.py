"""The paged KV cache: reads back what a contiguous cache holds, reuses freed blocks, and the slot arithmetic."""

import math

import pytest
import torch

from infralens.transformer import PagedKVCache, cache_waste


def test_interleaved_sequences_read_back_exactly():
    g = torch.Generator().manual_seed(0)
    cache = PagedKVCache(num_blocks=16, block_size=4, kv_heads=2, head_dim=8)
    contiguous = {0: [], 1: []}
    for step, (seq, n) in enumerate([(0, 4), (1, 3), (0, 1), (1, 6), (0, 1), (0, 2)]):
        k, v = torch.randn(2, n, 8, generator=g), torch.randn(2, n, 8, generator=g)
        cache.append(seq, k, v)
        contiguous[seq].append((k, v))
        for s, parts in contiguous.items():
            if parts:
                keys, values = cache.gather(s)
                assert torch.equal(keys, torch.cat([p[0] for p in parts], 1)), step
                assert torch.equal(values, torch.cat([p[1] for p in parts], 1)), step
    assert cache.lengths == {0: 8, 1: 9}
    assert cache.block_tables == {0: [0, 2], 1: [1, 3, 4]}  # blocks taken as needed: not contiguous


def test_released_blocks_are_reused():
    cache = PagedKVCache(num_blocks=3, block_size=2, kv_heads=1, head_dim=4)
    cache.append(0, torch.ones(1, 4, 4), torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="out of blocks: sequence 1 needs 2 more, 1 are free"):
        cache.append(1, torch.ones(1, 3, 4), torch.ones(1, 3, 4))
    cache.release(0)
    cache.append(1, torch.ones(1, 3, 4), torch.ones(1, 3, 4))
    assert cache.block_tables == {1: [0, 1]} and cache.free == [2]


def test_decode_attention_through_the_block_table():
    g = torch.Generator().manual_seed(1)
    cache = PagedKVCache(num_blocks=8, block_size=16, kv_heads=2, head_dim=32)
    k, v = torch.randn(2, 37, 32, generator=g), torch.randn(2, 37, 32, generator=g)
    cache.append(7, k, v)
    q = torch.randn(1, 2, 1, 32, generator=g)  # one decode query per head
    keys, values = cache.gather(7)
    paged = torch.nn.functional.scaled_dot_product_attention(q, keys[None], values[None])
    assert torch.allclose(paged, torch.nn.functional.scaled_dot_product_attention(q, k[None], v[None]))


def test_waste_by_hand():
    w = cache_waste([100, 2000, 37], max_seq_len=4096, block_size=16)
    assert w.tokens == 2137 and w.fixed_slots == 3 * 4096
    assert w.paged_slots == 112 + 2000 + 48
    assert w.fixed_waste == pytest.approx(1 - 2137 / 12288) and w.paged_waste == pytest.approx(23 / 2160)


def test_paged_slots_are_what_the_cache_allocates():
    lengths = [5, 16, 17, 33, 1]
    cache = PagedKVCache(num_blocks=64, block_size=16, kv_heads=1, head_dim=2)
    for i, n in enumerate(lengths):
        cache.append(i, torch.zeros(1, n, 2), torch.zeros(1, n, 2))
    used = sum(len(t) for t in cache.block_tables.values())
    assert used * 16 == cache_waste(lengths, max_seq_len=64, block_size=16).paged_slots
    assert used == sum(math.ceil(n / 16) for n in lengths)


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ([], {"max_seq_len": 64}, ["at least one"]),
        ([[10, 100]], {"max_seq_len": 64}, ["100 tokens", "max_seq_len=64", "to 100"]),
        ([[10, 0]], {"max_seq_len": 64}, ["lengths[i]", ">= 1"]),
        ([[10]], {"max_seq_len": 64, "block_size": 0}, ["block_size", ">= 1"]),
    ],
)
def test_waste_errors(args, kwargs, words):
    with pytest.raises(ValueError) as err:
        cache_waste(*(args or [[]]), **kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_cache_errors():
    cache = PagedKVCache(num_blocks=2, block_size=2, kv_heads=2, head_dim=4)
    with pytest.raises(ValueError, match=r"\(H_kv, S_new, Dh\) = \(2, S_new, 4\)"):
        cache.append(0, torch.zeros(3, 1, 4), torch.zeros(3, 1, 4))
    with pytest.raises(ValueError, match="seq_id 5 has no blocks"):
        cache.gather(5)


def test_the_last_free_block_can_be_taken():
    cache = PagedKVCache(num_blocks=2, block_size=4, kv_heads=1, head_dim=2, dtype=torch.bfloat16)
    assert cache.key_pool.dtype == cache.value_pool.dtype == torch.bfloat16
    cache.append(0, torch.ones(1, 8, 2), torch.ones(1, 8, 2))  # exactly two blocks: both taken
    assert cache.free == [] and cache.gather(0)[0].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="out of blocks: sequence 1 needs 1 more, 0 are free"):
        cache.append(1, torch.ones(1, 1, 2), torch.ones(1, 1, 2))


def test_cache_waste_pages_by_16_tokens_by_default():
    waste = cache_waste([1, 17], max_seq_len=32)
    assert waste.paged_slots == 16 + 32  # one block, then two
