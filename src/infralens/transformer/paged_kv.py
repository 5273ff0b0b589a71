r"""A paged KV cache: fixed-size blocks from one pool, a block table per sequence, and the memory it saves.

A server that reserves a contiguous cache of the maximum length for every
request wastes whatever the request does not use. A paged cache (vLLM's
PagedAttention) cuts the cache into blocks of :math:`b` tokens, hands them out
as a sequence grows, and keeps a *block table* from each sequence's logical
blocks to physical blocks of the pool. A sequence of :math:`n` tokens holds

.. math:: \text{slots}_\text{paged} = b \left\lceil n / b \right\rceil
   \quad\text{against}\quad \text{slots}_\text{fixed} = S_{\max}

so at most :math:`b - 1` slots per sequence are unused. :class:`PagedKVCache`
is one layer of such a cache (every layer of a model uses the same block
table); :func:`cache_waste` counts the slots for a mix of requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from infralens.core import positive_int


class PagedKVCache:
    """One layer's keys and values in a pool of blocks, ``(num_blocks, H_kv, b, Dh)``, with a block table per sequence.

    :param num_blocks: blocks in the pool.
    :param block_size: :math:`b`, tokens per block.
    :param kv_heads: :math:`H_{kv}`.
    :param head_dim: :math:`d_h`.
    :param dtype: the cache's dtype.

    >>> cache = PagedKVCache(num_blocks=8, block_size=4, kv_heads=2, head_dim=16)
    >>> k = v = torch.randn(2, 6, 16)                   # (H_kv, S, Dh): 6 tokens
    >>> cache.append(seq_id=0, key=k, value=v)
    >>> cache.block_tables[0], cache.lengths[0]          # two blocks: 4 + 2 tokens
    ([0, 1], 6)
    >>> keys, values = cache.gather(0)
    >>> torch.equal(keys, k)
    True
    """

    def __init__(
        self, *, num_blocks: int, block_size: int, kv_heads: int, head_dim: int, dtype: torch.dtype = torch.float32
    ):
        n = positive_int("num_blocks", num_blocks, example=1024)
        self.block_size = positive_int("block_size", block_size, example=16)
        h = positive_int("kv_heads", kv_heads, example=8)
        dh = positive_int("head_dim", head_dim, example=128)
        self.key_pool = torch.zeros(n, h, self.block_size, dh, dtype=dtype)  # (N, H_kv, b, Dh)
        self.value_pool = torch.zeros(n, h, self.block_size, dh, dtype=dtype)
        self.free: list[int] = list(range(n))
        """Physical blocks not in any table, lowest first."""
        self.block_tables: dict[int, list[int]] = {}
        """Per sequence, its physical blocks in logical order."""
        self.lengths: dict[int, int] = {}
        """Per sequence, tokens written."""

    def append(self, seq_id: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Write ``key`` and ``value`` ``(H_kv, S_new, Dh)`` after the sequence's tokens, taking blocks as needed."""
        if key.shape != value.shape or key.ndim != 3 or key.shape[0] != self.key_pool.shape[1]:
            raise ValueError(
                f"key and value must both be (H_kv, S_new, Dh) = ({self.key_pool.shape[1]}, S_new, "
                f"{self.key_pool.shape[3]}); got {tuple(key.shape)} and {tuple(value.shape)}"
            )
        table = self.block_tables.setdefault(seq_id, [])
        start = self.lengths.get(seq_id, 0)
        end = start + key.shape[1]
        needed = -(-end // self.block_size) - len(table)
        if needed > len(self.free):
            raise ValueError(f"out of blocks: sequence {seq_id} needs {needed} more, {len(self.free)} are free")
        table.extend(self.free.pop(0) for _ in range(needed))
        for i, pos in enumerate(range(start, end)):
            block, slot = table[pos // self.block_size], pos % self.block_size  # logical -> physical
            self.key_pool[block, :, slot] = key[:, i]
            self.value_pool[block, :, slot] = value[:, i]
        self.lengths[seq_id] = end

    def gather(self, seq_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The sequence's keys and values, ``(H_kv, S, Dh)`` each, read through its block table."""
        if seq_id not in self.block_tables:
            raise ValueError(f"seq_id {seq_id} has no blocks; sequences: {sorted(self.block_tables)}")
        blocks = torch.tensor(self.block_tables[seq_id])
        n = self.lengths[seq_id]

        def read(pool: torch.Tensor) -> torch.Tensor:
            chosen = pool[blocks]  # (n_blocks, H_kv, b, Dh)
            return chosen.transpose(0, 1).flatten(1, 2)[:, :n]  # (H_kv, n_blocks * b, Dh) -> (H_kv, S, Dh)

        return read(self.key_pool), read(self.value_pool)

    def release(self, seq_id: int) -> None:
        """Return a finished sequence's blocks to the pool."""
        self.free = sorted(self.free + self.block_tables.pop(seq_id))
        del self.lengths[seq_id]


@dataclass(frozen=True)
class CacheWaste:
    """Token slots a mix of requests occupies in a fixed-size cache and in a paged one."""

    tokens: int
    """:math:`\\sum n`: slots actually holding a token."""
    fixed_slots: int
    """:math:`R \\cdot S_{\\max}`: every request reserves the maximum length."""
    paged_slots: int
    """:math:`\\sum b \\lceil n / b \\rceil`."""

    @property
    def fixed_waste(self) -> float:
        """Share of the fixed cache's slots that hold nothing."""
        return 1 - self.tokens / self.fixed_slots

    @property
    def paged_waste(self) -> float:
        """Share of the paged cache's slots that hold nothing."""
        return 1 - self.tokens / self.paged_slots


def cache_waste(lengths: Sequence[int], *, max_seq_len: int, block_size: int = 16) -> CacheWaste:
    r"""Slots of a fixed cache (:math:`S_{\max}` per request) and a paged one (:math:`b \lceil n/b \rceil`).

    Multiply by the bytes of one token's cache,
    ``kv_cache_bytes(layers=..., kv_heads=..., head_dim=..., seq=1)``, for bytes.

    :param lengths: tokens of each request (prompt plus generated), each at most ``max_seq_len``.
    :param max_seq_len: :math:`S_{\max}`, what a fixed cache reserves per request.
    :param block_size: :math:`b`.
    :returns: a :class:`CacheWaste`.

    >>> w = cache_waste([100, 2000, 37], max_seq_len=4096, block_size=16)
    >>> w.tokens, w.fixed_slots, w.paged_slots
    (2137, 12288, 2160)
    """
    S = positive_int("max_seq_len", max_seq_len, example=4096)
    b = positive_int("block_size", block_size, example=16)
    if not lengths:
        raise ValueError("lengths must list at least one request length, e.g. lengths=[512, 1800]")
    ns = [positive_int("lengths[i]", n, example=512) for n in lengths]
    if max(ns) > S:
        raise ValueError(f"a request of {max(ns)} tokens does not fit max_seq_len={S}; raise max_seq_len to {max(ns)}")
    return CacheWaste(sum(ns), len(ns) * S, sum(b * math.ceil(n / b) for n in ns))
