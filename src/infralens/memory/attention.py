r"""Attention with and without its score matrix: naive, and chunked over queries.

Naive attention materialises the scores :math:`QK^\top/\sqrt{d}`, one
:math:`S_q \times S_k` matrix per head, then their softmax:

.. math:: O = \operatorname{softmax}\!\left(\frac{QK^\top}{\sqrt{d}}\right) V

The softmax normalises each query's row over the keys and nothing else, so the
queries can be processed in chunks of :math:`c` rows with the same result; only
a :math:`c \times S_k` block of scores exists at a time:

.. math:: \text{score bytes} = B \cdot h \cdot S_q \cdot S_k \cdot \text{itemsize}
   \quad\longrightarrow\quad B \cdot h \cdot c \cdot S_k \cdot \text{itemsize}

FlashAttention-style kernels (``F.scaled_dot_product_attention`` picks one when
it can) go further and also split the keys, with a running softmax.
"""

from __future__ import annotations

import math

import torch

from infralens.calculators import dtype_bytes
from infralens.diffusion._args import positive_int


def _check_qkv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must have 4 axes (B, h, S, d), e.g. (1, 8, 1024, 64); got {got}")
    if key.shape != value.shape or query.shape[:2] != key.shape[:2] or query.shape[-1] != key.shape[-1]:
        raise ValueError(
            "query (B, h, S_q, d), key and value (B, h, S_k, d) must agree on B, h and d, and key must have "
            f"the shape of value; got query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )


def naive_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    r"""Attention that stores the whole score matrix: :math:`\operatorname{softmax}(QK^\top/\sqrt{d})\,V`.

    :param query: :math:`Q`, shape ``(B, h, S_q, d)``.
    :param key: :math:`K`, shape ``(B, h, S_k, d)``.
    :param value: :math:`V`, shape ``(B, h, S_k, d)``.
    :returns: :math:`O`, shape ``(B, h, S_q, d)``.

    >>> import torch.nn.functional as F
    >>> q, k, v = torch.randn(3, 1, 2, 64, 16).unbind(0)
    >>> torch.allclose(naive_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-6)
    True
    """
    _check_qkv(query, key, value)
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (B, h, S_q, S_k)
    return scores.softmax(dim=-1) @ value  # (B, h, S_q, d)


def chunked_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, chunk_size: int) -> torch.Tensor:
    r"""The same attention, ``chunk_size`` query rows at a time: only a :math:`c \times S_k` block of scores is alive.

    Each output row depends on its own query row and on all keys, so rows can be
    computed in any grouping; the result equals :func:`naive_attention` up to
    floating-point rounding. The last chunk may be shorter.

    :param query: :math:`Q`, shape ``(B, h, S_q, d)``.
    :param key: :math:`K`, shape ``(B, h, S_k, d)``.
    :param value: :math:`V`, shape ``(B, h, S_k, d)``.
    :param chunk_size: :math:`c`, query rows per chunk (>= 1).
    :returns: :math:`O`, shape ``(B, h, S_q, d)``.

    >>> q, k, v = torch.randn(3, 1, 2, 100, 16).unbind(0)
    >>> torch.allclose(chunked_attention(q, k, v, chunk_size=32), naive_attention(q, k, v), atol=1e-6)
    True
    """
    _check_qkv(query, key, value)
    c = positive_int("chunk_size", chunk_size, example=1024)
    out = torch.empty_like(query)  # (B, h, S_q, d)
    for start in range(0, query.shape[2], c):
        rows = slice(start, start + c)
        out[:, :, rows] = naive_attention(query[:, :, rows], key, value)  # (B, h, c, d)
    return out


def score_bytes(*, batch: int, heads: int, queries: int, keys: int, dtype: str = "bf16") -> float:
    r"""Bytes of one attention score block, :math:`B \cdot h \cdot S_q \cdot S_k \cdot \text{itemsize}`.

    With ``queries`` the whole sequence this is what naive attention stores; with
    ``queries`` a chunk size it is what :func:`chunked_attention` stores at a time.

    :param batch: :math:`B`.
    :param heads: :math:`h`.
    :param queries: :math:`S_q`, query rows in the block.
    :param keys: :math:`S_k`, keys every query attends to.
    :param dtype: a name of :data:`~infralens.calculators.DTYPE_BYTES` (``"fp32"``, ``"bf16"``, ...).
    :returns: bytes.

    >>> score_bytes(batch=1, heads=40, queries=32760, keys=32760) == 40 * 32760**2 * 2
    True
    """
    b = positive_int("batch", batch, example=1)
    h = positive_int("heads", heads, example=40)
    sq = positive_int("queries", queries, example=4096)
    sk = positive_int("keys", keys, example=4096)
    return b * h * sq * sk * dtype_bytes(dtype)
