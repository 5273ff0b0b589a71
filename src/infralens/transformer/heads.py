r"""Heads: the last axis of a projection cut into :math:`H` heads of :math:`D_h` channels, and back.

A projection gives ``(B, S, H * Dh)``; attention wants ``(B, H, S, Dh)`` so that
each head's ``(S, Dh)`` matrix is contiguous in the batch-of-matrices sense.
That takes two steps: ``view`` to ``(B, S, H, Dh)`` (cut the channels) then
``transpose(1, 2)`` (move the head axis before the sequence). A single
``reshape`` to ``(B, H, S, Dh)`` has the right shape and the wrong contents.

Grouped-query attention keeps :math:`H_{kv} < H` key/value heads; each serves
:math:`H / H_{kv}` query heads, which :func:`repeat_kv` makes explicit.
"""

from __future__ import annotations

import torch

from infralens.core import positive_int


def _check_4d(name: str, x: object, example: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have 4 axes {example}; got {got}")
    return x


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, S, H * Dh) -> (B, H, S, Dh)``: ``view`` then ``transpose(1, 2)``.

    >>> x = torch.arange(2 * 3 * 4).reshape(1, 2, 12)  # (B, S, H * Dh) with H = 3, Dh = 4
    >>> split_heads(x, 3)[0, 1].tolist()  # head 1: channels 4..7 of every position
    [[4, 5, 6, 7], [16, 17, 18, 19]]
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must have 3 axes (B, S, H * Dh), e.g. (1, 16, 512); got {got}")
    h = positive_int("heads", heads, example=8)
    B, S, width = x.shape
    if width % h:
        divisors = [d for d in range(1, width + 1) if width % d == 0]
        nearest = min(divisors, key=lambda d: (abs(d - h), d))
        raise ValueError(f"heads must divide the last axis ({width}), e.g. heads={nearest}; got {h}")
    return x.view(B, S, h, width // h).transpose(1, 2)  # (B, S, H, Dh) -> (B, H, S, Dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, S, Dh) -> (B, S, H * Dh)``, the inverse of :func:`split_heads`.

    >>> x = torch.randn(2, 7, 12)  # (B, S, H * Dh)
    >>> torch.equal(merge_heads(split_heads(x, 4)), x)
    True
    """
    _check_4d("x", x, "(B, H, S, Dh), e.g. (1, 8, 16, 64)")
    B, H, S, Dh = x.shape
    return x.transpose(1, 2).reshape(B, S, H * Dh)  # (B, S, H, Dh) -> (B, S, H * Dh)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    r"""``(B, H_kv, S, Dh) -> (B, H_kv * n_rep, S, Dh)``: each KV head repeated for its group of query heads.

    Query head :math:`j` reads KV head :math:`\lfloor j / n_\text{rep} \rfloor`
    (consecutive query heads share one), as ``torch.repeat_interleave`` on the
    head axis and transformers' ``repeat_kv`` do; the expand costs no copy until
    the reshape.

    >>> kv = torch.arange(2.0).view(1, 2, 1, 1)  # two KV heads holding 0 and 1
    >>> repeat_kv(kv, 3).flatten().tolist()
    [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    """
    _check_4d("x", x, "(B, H_kv, S, Dh), e.g. (1, 8, 16, 64)")
    n = positive_int("n_rep", n_rep, example=4)
    if n == 1:
        return x
    B, H_kv, S, Dh = x.shape
    return x[:, :, None].expand(B, H_kv, n, S, Dh).reshape(B, H_kv * n, S, Dh)  # (B, H_kv * n_rep, S, Dh)
