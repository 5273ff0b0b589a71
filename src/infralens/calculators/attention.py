r"""Naive attention: the score matrix it materialises and the FLOPs it spends.

For :math:`N` tokens, :math:`h` heads of size :math:`d`, batch :math:`B`:

.. math:: \text{score bytes} = B \cdot h \cdot N^2 \cdot \text{bytes}, \qquad
   \text{FLOPs} = \underbrace{2 B h N^2 d}_{QK^\top} + \underbrace{2 B h N^2 d}_{PV} = 4 B h N^2 d

per layer (a multiply-add counts as 2 FLOPs; softmax and projections are not
counted). FlashAttention-style kernels never store the scores, so the first
number is what they save, not what they spend.
"""

from __future__ import annotations

from dataclasses import dataclass

from infralens.diffusion._args import positive_int

from .dtypes import dtype_bytes


@dataclass(frozen=True)
class AttentionCost:
    """Per-layer cost of one naive attention call."""

    tokens: int
    heads: int
    head_dim: int
    batch: int
    dtype: str
    score_bytes: float
    """:math:`B h N^2` scores at the dtype's size."""
    flops: int
    """:math:`4 B h N^2 d`."""


def attention_cost(*, tokens: int, heads: int, head_dim: int, batch: int = 1, dtype: str = "bf16") -> AttentionCost:
    r"""Score-matrix memory :math:`B h N^2 \cdot \text{bytes}` and FLOPs :math:`4 B h N^2 d` of naive attention.

    >>> c = attention_cost(tokens=75600, heads=40, head_dim=128)
    >>> c.score_bytes == 40 * 75600**2 * 2, c.flops == 4 * 40 * 75600**2 * 128
    (True, True)
    """
    n = positive_int("tokens", tokens, example=32760)
    h = positive_int("heads", heads, example=40)
    d = positive_int("head_dim", head_dim, example=128)
    b = positive_int("batch", batch, example=1)
    size = dtype_bytes(dtype)
    return AttentionCost(n, h, d, b, dtype, b * h * n * n * size, 4 * b * h * n * n * d)
