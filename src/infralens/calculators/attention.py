r"""Naive attention: the score matrix it materialises and the FLOPs it spends.

For :math:`N` tokens, :math:`h` heads of size :math:`d` and batch :math:`B`,
one layer of self-attention stores :math:`B h` score matrices of
:math:`N \times N` and does two matrix products per head, :math:`QK^\top` and
:math:`PV`, each of :math:`N^2 d` multiply-adds (2 FLOPs each):

.. math:: \text{score bytes} = B \cdot h \cdot N^2 \cdot \text{bytes}, \qquad
   \text{FLOPs} = \underbrace{2 B h N^2 d}_{QK^\top} + \underbrace{2 B h N^2 d}_{PV} = 4 B h N^2 d

Softmax, masking and the Q/K/V/output projections are not counted. The bytes
are those of one score matrix per head (the softmax makes a second one of the
same size); FlashAttention-style kernels never store it, so it is what they
save, while the FLOPs stay.
"""

from __future__ import annotations

from dataclasses import dataclass

from infralens.diffusion._args import positive_int


@dataclass(frozen=True)
class AttentionCost:
    """Per-layer cost of one naive self-attention call."""

    tokens: int
    """:math:`N`."""
    heads: int
    """:math:`h`."""
    head_dim: int
    """:math:`d`."""
    batch: int
    """:math:`B`."""
    dtype: str
    """The scores' number format, a key of :data:`~infralens.calculators.DTYPE_BYTES`."""
    score_bytes: float
    """:math:`B h N^2` scores at the dtype's size."""
    flops: int
    """:math:`4 B h N^2 d`: :math:`QK^\\top` and :math:`PV`, :math:`2 B h N^2 d` each."""


def attention_cost(*, tokens: int, heads: int, head_dim: int, batch: int = 1, dtype: str = "bf16") -> AttentionCost:
    r"""Score-matrix memory :math:`B h N^2 \cdot \text{bytes}` and FLOPs :math:`4 B h N^2 d` of naive attention.

    The bytes come from :func:`infralens.memory.score_bytes` with
    :math:`S_q = S_k = N`, so the memory pages and this calculator share one formula.

    :param tokens: :math:`N`, the sequence length (queries = keys).
    :param heads: :math:`h`, attention heads.
    :param head_dim: :math:`d`, channels per head.
    :param batch: :math:`B`.
    :param dtype: the scores' format: ``"fp32"``, ``"bf16"``, ``"fp16"``, ...
    :returns: an :class:`AttentionCost` for one layer.

    >>> c = attention_cost(tokens=75600, heads=40, head_dim=128)
    >>> c.score_bytes == 40 * 75600**2 * 2, c.flops == 2 * (2 * 40 * 75600**2 * 128)
    (True, True)
    """
    # imported here: infralens.memory imports this package (dtype_bytes)
    from infralens.memory.attention import score_bytes

    n = positive_int("tokens", tokens, example=32760)
    h = positive_int("heads", heads, example=40)
    d = positive_int("head_dim", head_dim, example=128)
    b = positive_int("batch", batch, example=1)
    size = score_bytes(batch=b, heads=h, queries=n, keys=n, dtype=dtype)  # B h N^2 bytes
    qk = pv = 2 * b * h * n * n * d  # N^2 d multiply-adds per head, each
    return AttentionCost(n, h, d, b, dtype, size, qk + pv)
