r"""Self-attention: the FLOPs every kernel spends, and the score matrices only a naive one stores.

For :math:`N` tokens, :math:`h` heads of size :math:`d` and batch :math:`B`,
one layer of self-attention does two matrix products per head, :math:`QK^\top`
and :math:`PV`, each of :math:`N^2 d` multiply-adds (2 FLOPs each). A naive
implementation also materialises :math:`B h` score matrices of
:math:`N \times N`, and its softmax a second set of the same size, alive at
the same time:

.. math:: \text{FLOPs} = \underbrace{2 B h N^2 d}_{QK^\top} + \underbrace{2 B h N^2 d}_{PV} = 4 B h N^2 d,
   \qquad \text{score bytes} = B \cdot h \cdot N^2 \cdot \text{bytes},
   \qquad \text{naive peak} = 2 \cdot \text{score bytes}

The FLOPs are what every kernel pays. The bytes are what fused kernels never
allocate: PyTorch's SDPA flash, memory-efficient and cuDNN backends (and its
CPU flash kernel), FlashAttention, SageAttention, xformers. Only a path that
writes the scores out stores them: SDPA's math backend, diffusers'
``AttnProcessor`` and ``SlicedAttnProcessor`` (one slice of heads at a time).
Softmax, masking and the Q/K/V/output projections are not counted here; a
whole DiT call is :func:`~infralens.calculators.dit_flops`.
"""

from __future__ import annotations

from dataclasses import dataclass

from infralens.attention import score_bytes
from infralens.core import dtype_name, positive_int

SCORE_DTYPES = ("fp32", "bf16", "fp16")
"""Formats a materialised score matrix is kept in: attention's compute formats (no kernel stores int or fp8 scores)."""


@dataclass(frozen=True)
class AttentionCost:
    """Per-layer cost of one self-attention call: FLOPs, and the score memory of the naive path."""

    tokens: int
    """:math:`N`."""
    heads: int
    """:math:`h`."""
    head_dim: int
    """:math:`d`."""
    batch: int
    """:math:`B`."""
    dtype: str
    """The scores' number format, one of :data:`SCORE_DTYPES`."""
    score_bytes: float
    """:math:`B h N^2` scores at the dtype's size: one set of score matrices."""
    naive_peak_bytes: float
    """:math:`2 B h N^2` values: the scores and their softmax, alive together in naive attention."""
    flops: int
    """:math:`4 B h N^2 d`: :math:`QK^\\top` and :math:`PV`, :math:`2 B h N^2 d` each."""


def attention_cost(*, tokens: int, heads: int, head_dim: int, batch: int = 1, dtype: str = "bf16") -> AttentionCost:
    r"""FLOPs :math:`4 B h N^2 d` of self-attention; the naive path's scores, :math:`B h N^2 \cdot \text{bytes}`.

    The bytes come from :func:`infralens.attention.score_bytes` with
    :math:`S_q = S_k = N`, so the memory pages and this calculator share one formula.

    :param tokens: :math:`N`, the sequence length (queries = keys).
    :param heads: :math:`h`, attention heads.
    :param head_dim: :math:`d`, channels per head.
    :param batch: :math:`B`.
    :param dtype: the scores' format: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (torch's names too).
    :returns: an :class:`AttentionCost` for one layer.

    >>> c = attention_cost(tokens=75600, heads=40, head_dim=128)
    >>> c.score_bytes == 40 * 75600**2 * 2, c.naive_peak_bytes == 2 * c.score_bytes
    (True, True)
    >>> c.flops == 2 * (2 * 40 * 75600**2 * 128)
    True
    """
    n = positive_int("tokens", tokens, example=32760)
    h = positive_int("heads", heads, example=40)
    d = positive_int("head_dim", head_dim, example=128)
    b = positive_int("batch", batch, example=1)
    name = dtype_name(dtype)
    if name not in SCORE_DTYPES:
        raise ValueError(
            f"dtype must be a format attention scores are kept in, one of {', '.join(SCORE_DTYPES)}, "
            f"e.g. dtype='bf16'; got {dtype!r}"
        )
    size = score_bytes(batch=b, heads=h, queries=n, keys=n, dtype=name)  # B h N^2 bytes
    qk = pv = 2 * b * h * n * n * d  # N^2 d multiply-adds per head, each
    return AttentionCost(n, h, d, b, name, size, 2 * size, qk + pv)
