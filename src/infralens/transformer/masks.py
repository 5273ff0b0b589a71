r"""Attention masks as additive biases: 0 where a key is visible, the dtype's most negative value where not.

A mask is added to the scores *before* the softmax,

.. math:: P = \operatorname{softmax}(S + M), \qquad
   M_{ij} = \begin{cases} 0 & \text{key } j \text{ visible to query } i \\
   \text{finfo.min} & \text{otherwise} \end{cases}

so a hidden key gets :math:`e^{\text{finfo.min}} = 0` weight and the visible
ones still sum to 1. Query :math:`i` of :math:`S_q` stands at position
:math:`S_k - S_q + i` of the :math:`S_k` keys (bottom-right alignment): with
:math:`S_q = S_k` that is the lower triangle, with one query against a cache it
is a row that sees every key. The most negative finite value, not
:math:`-\infty`, is used as transformers does: a row with every key hidden
then has a finite softmax instead of NaN.
"""

from __future__ import annotations

import torch

from infralens.attention import causal_visible
from infralens.core import positive_int


def _float_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, e.g. dtype=torch.float32; got {dtype!r}")
    return dtype


def additive_mask(visible: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A boolean mask (``True`` = visible) as an additive one: 0 where visible, ``torch.finfo(dtype).min`` where not.

    Combine masks as booleans (``&``) and convert once: two additive masks added
    together overflow to ``-inf`` where both hide a key.

    >>> additive_mask(torch.tensor([True, False]), dtype=torch.bfloat16).tolist()
    [0.0, -3.3895313892515355e+38]
    """
    if not isinstance(visible, torch.Tensor) or visible.dtype != torch.bool:
        got = visible.dtype if isinstance(visible, torch.Tensor) else type(visible).__name__
        raise ValueError(f"visible must be a boolean tensor (True = visible), e.g. torch.ones(4, 4).bool(); got {got}")
    dtype = _float_dtype(dtype)
    zero = torch.zeros((), dtype=dtype, device=visible.device)
    return torch.where(visible, zero, torch.finfo(dtype).min)


def causal_mask(q_len: int, k_len: int | None = None, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive causal mask ``(q_len, k_len)``; query ``i`` stands at position ``k_len - q_len + i``.

    ``k_len`` defaults to ``q_len`` (a prompt attending to itself). With
    ``q_len = 1`` (one decode step against a cache) every key is visible.

    >>> causal_mask(3).eq(0).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    >>> causal_mask(1, 4).eq(0).int().tolist()
    [[1, 1, 1, 1]]
    """
    sq = positive_int("q_len", q_len, example=16)
    sk = sq if k_len is None else positive_int("k_len", k_len, example=sq)
    if sk < sq:
        raise ValueError(f"k_len must be >= q_len={sq} (the queries are the last q_len of the keys), e.g. k_len={sq}")
    visible = causal_visible(torch.arange(sk - sq, sk), torch.arange(sk))  # (S_q, S_k)
    return additive_mask(visible, dtype=dtype)


def padded_causal_mask(
    attention_mask: torch.Tensor, *, q_len: int | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Causal and padding masks combined: additive, ``(B, 1, q_len, S_k)`` (one mask for every head).

    :param attention_mask: the tokenizer's mask ``(B, S_k)``, 1 on real tokens and 0 on padding,
        for every key (cached ones included).
    :param q_len: queries, the last ``q_len`` positions (default: all ``S_k``).
    :param dtype: the scores' dtype.

    >>> m = padded_causal_mask(torch.tensor([[0, 1, 1]]))  # one left-padded row
    >>> m.eq(0).int()[0, 0].tolist()
    [[0, 0, 0], [0, 1, 0], [0, 1, 1]]
    """
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.ndim != 2:
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must have 2 axes (B, S_k), e.g. torch.tensor([[0, 1, 1]]); got {got}")
    if not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError("attention_mask must hold 1 (real token) or 0 (padding), e.g. torch.tensor([[0, 1, 1]])")
    sk = attention_mask.shape[1]
    sq = sk if q_len is None else positive_int("q_len", q_len, example=sk)
    if sq > sk:
        raise ValueError(f"q_len must be <= the keys in attention_mask ({sk}), e.g. q_len=1; got {sq}")
    causal = causal_visible(torch.arange(sk - sq, sk), torch.arange(sk)).to(attention_mask.device)  # (S_q, S_k)
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S_k): padding hides a key from every query
    return additive_mask(causal & keys, dtype=dtype)  # (B, 1, S_q, S_k)
