r"""KV cache of a decoder-only transformer.

Every layer keeps a key and a value vector per KV head for every token:

.. math:: \text{bytes} = 2 \cdot L \cdot K \cdot d \cdot S \cdot B \cdot \text{bytes per value}

for :math:`L` layers, :math:`K` KV heads (fewer than the query heads with
grouped-query attention), head size :math:`d`, :math:`S` tokens and batch
:math:`B`.
"""

from __future__ import annotations

from infralens.core.args import positive_int
from infralens.core.dtypes import dtype_bytes


def kv_cache_bytes(
    *, layers: int, kv_heads: int, head_dim: int, seq: int, batch: int = 1, dtype: str = "bf16"
) -> float:
    r"""KV-cache size :math:`2 L K d S B \cdot \text{bytes per value}`.

    :param layers: :math:`L`, transformer layers.
    :param kv_heads: :math:`K`, key/value heads per layer.
    :param head_dim: :math:`d`, channels per head.
    :param seq: :math:`S`, tokens in the cache.
    :param batch: :math:`B`, sequences.
    :param dtype: the cache's format: ``"fp32"``, ``"bf16"``, ``"fp8"``, ...
    :returns: bytes.

    >>> kv_cache_bytes(layers=32, kv_heads=8, head_dim=128, seq=8192) == 2 * 32 * 8 * 128 * 8192 * 2
    True
    """
    values = 2  # a key and a value
    for name, value, example in (
        ("layers", layers, 32),
        ("kv_heads", kv_heads, 8),
        ("head_dim", head_dim, 128),
        ("seq", seq, 8192),
        ("batch", batch, 1),
    ):
        values *= positive_int(name, value, example=example)
    return values * dtype_bytes(dtype)
