r"""Attention slicing as diffusers does it: the batch-times-heads rows in slices, each slice naive.

diffusers' ``SlicedAttnProcessor`` flattens the batch and head axes into one
axis of :math:`B h` rows and walks it ``slice_size`` rows at a time. Each slice
is ordinary attention: every query of the slice against every key, so it builds
full :math:`S_q \times S_k` score matrices, ``slice_size`` of them, and their
softmax next to them. What it saves, against a naive kernel, is the other
rows; against a fused kernel it saves nothing, since that one stores no score
matrix at all:

.. math:: \text{scores alive} = 2\,k\,S_q S_k \;\text{values} \quad (k = \texttt{slice\_size})

It is exact: each row's softmax never needs another row. It is *not* query
chunking (:func:`~infralens.attention.chunked_attention`), which keeps every
head and cuts the queries.
"""

from __future__ import annotations

import torch

from infralens.core import positive_int

from .softmax import _check_qkv, naive_attention


def sliced_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, slice_size: int) -> torch.Tensor:
    r"""Attention over the :math:`B h` rows ``slice_size`` at a time, each slice with its full scores.

    :param query: :math:`Q`, shape ``(B, h, S_q, d)``.
    :param key: :math:`K`, shape ``(B, h, S_k, d)``.
    :param value: :math:`V`, shape ``(B, h, S_k, d_v)``.
    :param slice_size: :math:`k`, rows of the flattened batch-times-heads axis per slice
        (diffusers' ``"auto"`` is half the heads, ``"max"`` is 1).
    :returns: :math:`O`, shape ``(B, h, S_q, d_v)``, equal to :func:`naive_attention`'s.

    >>> q, k, v = torch.randn(3, 2, 4, 32, 8).unbind(0)
    >>> torch.allclose(sliced_attention(q, k, v, slice_size=3), naive_attention(q, k, v), atol=1e-6)
    True
    """
    _check_qkv(query, key, value)
    k = positive_int("slice_size", slice_size, example=4)
    B, h, Sq, _ = query.shape
    rows = B * h
    if k > rows:
        raise ValueError(
            f"slice_size must be at most batch * heads = {rows}, e.g. slice_size={max(rows // 2, 1)}; got {k}"
        )
    q, kk, v = (t.reshape(rows, 1, t.shape[2], t.shape[3]) for t in (query, key, value))  # (B h, 1, S, d)
    out = torch.empty(rows, 1, Sq, value.shape[-1], dtype=query.dtype, device=query.device)  # (B h, 1, S_q, d_v)
    for start in range(0, rows, k):  # one slice: k rows, every query against every key
        out[start : start + k] = naive_attention(q[start : start + k], kk[start : start + k], v[start : start + k])
    return out.reshape(B, h, Sq, value.shape[-1])
