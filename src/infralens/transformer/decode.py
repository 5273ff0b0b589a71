r"""One decode step's work against its memory traffic: why token-by-token generation is memory-bound.

A decode step multiplies every weight matrix by one new token per sequence and
reads every cached key and value once. With :math:`P` matrix parameters (every
weight except the embedding table, of which only the looked-up rows are read),
a batch of :math:`B` sequences each with :math:`S` cached tokens:

.. math:: \text{FLOPs} = 2 B P + 4 B L H d_h S, \qquad
   \text{bytes} = P \cdot b_w + 2 L B S H_{kv} d_h \cdot b_{kv}

(:math:`2P` per token for the matmuls, :math:`2 H d_h S` each for
:math:`QK^\top` and :math:`PV` per layer; weights read once per step whatever
:math:`B`, their bytes as :func:`infralens.calculators.weight_memory` counts
them, group scales included). Their ratio, the arithmetic intensity, is about one FLOP per byte
for :math:`B = 1` in 16 bits, two orders of magnitude below what a GPU needs
to keep its arithmetic units busy. The FLOPs are what torch's
``FlopCounterMode`` counts on a real decode step; the cache bytes are
:func:`infralens.calculators.kv_cache_bytes`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from infralens.calculators import kv_cache_bytes, weight_memory
from infralens.core import nearest_text, positive_int


@dataclass(frozen=True)
class DecodeCost:
    """FLOPs and bytes read by one decode step of a batch."""

    flops: float
    """:math:`2BP + 4BLHd_hS`."""
    weight_bytes: float
    """:math:`P \\cdot b_w`: every weight matrix, read once per step (int4 with its 16-bit scale per 128)."""
    kv_bytes: float
    """The whole KV cache of the batch, read once per step."""

    @property
    def bytes(self) -> float:
        """Weights plus KV cache."""
        return self.weight_bytes + self.kv_bytes

    @property
    def intensity(self) -> float:
        """FLOPs per byte read."""
        return self.flops / self.bytes


def decode_cost(
    *,
    params: float,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    seq: int,
    batch: int = 1,
    weight_dtype: str = "bf16",
    kv_dtype: str = "bf16",
) -> DecodeCost:
    r"""FLOPs and bytes of one decode step: :math:`2BP + 4BLHd_hS` against :math:`P b_w + 2LBSH_{kv}d_h b_{kv}`.

    :param params: :math:`P`, parameters of the weight matrices (all but the embedding table).
    :param layers: :math:`L`.
    :param heads: :math:`H`, query heads.
    :param kv_heads: :math:`H_{kv}`, key/value heads.
    :param head_dim: :math:`d_h`.
    :param seq: :math:`S`, tokens already cached per sequence.
    :param batch: :math:`B`, sequences decoded together.
    :param weight_dtype: format of the weights (``"bf16"``, ``"int8"``, ``"int4"``, ...).
    :param kv_dtype: format of the cache.
    :returns: a :class:`DecodeCost`.

    >>> c = decode_cost(params=1e9, layers=16, heads=16, kv_heads=4, head_dim=64, seq=1024)
    >>> c.flops == 2 * 1e9 + 4 * 16 * 16 * 64 * 1024, c.kv_bytes == 2 * 16 * 1024 * 4 * 64 * 2
    (True, True)
    """
    if isinstance(params, bool) or not isinstance(params, numbers.Real) or not math.isfinite(params) or params <= 0:
        raise ValueError(f"params must be a finite number > 0, e.g. params=6.5e9; got {params!r}")
    L = positive_int("layers", layers, example=32)
    H = positive_int("heads", heads, example=32)
    dh = positive_int("head_dim", head_dim, example=128)
    S = positive_int("seq", seq, example=4096)
    B = positive_int("batch", batch, example=1)
    if H % positive_int("kv_heads", kv_heads, example=8):
        raise ValueError(
            f"heads={H} must be a multiple of kv_heads={kv_heads}; {nearest_text(kv_heads, lambda k: H % k == 0)}"
        )
    kv = kv_cache_bytes(layers=L, kv_heads=kv_heads, head_dim=dh, seq=S, batch=B, dtype=kv_dtype)
    flops = 2 * B * params + 4 * B * L * H * dh * S  # matmuls with the weights; QK^T and PV against the cache
    weights = weight_memory(params=params, dtype=weight_dtype).total_bytes  # int4: with its group scales
    return DecodeCost(flops=float(flops), weight_bytes=weights, kv_bytes=kv)
