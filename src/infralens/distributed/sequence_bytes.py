r"""Bytes each rank sends per transformer layer (forward) under the three ways of splitting the sequence.

With :math:`N` ranks, :math:`s = \lceil S/N \rceil` tokens per rank, :math:`H`
query heads and :math:`H_{kv}` key/value heads of :math:`d` channels, batch
:math:`B` and :math:`b` bytes per value:

.. math:: \text{Ulysses} = \tfrac{N-1}{N}\,B s d\,(2H + 2H_{kv})\,b, \quad
   \text{ring} = (N-1)\,B s d\,2H_{kv}\,b, \quad
   \text{Megatron SP} = 4\,\tfrac{N-1}{N}\,B\,N s\,H d\,b

Ulysses sends its shards of Q, K, V and the output through four all-to-alls;
ring attention passes its K and V block :math:`N-1` times; Megatron's sequence
parallelism all-gathers and reduce-scatters the :math:`(B, S, Hd)` activations
around the attention and the MLP blocks (the bytes of tensor parallelism's two
all-reduces). The MLP of Ulysses and ring attention needs no communication: its
weights are replicated and it works token by token. Gradients, the backward pass
(about twice these bytes) and the weights' data-parallel all-reduce are extra.
"""

from __future__ import annotations

from infralens.core import dtype_bytes, positive_int

from .sequence_shards import padded_length

SEQUENCE_SCHEMES = ("ulysses", "ring", "megatron")


def sequence_parallel_bytes(
    scheme: str,
    *,
    batch: int,
    seq_len: int,
    heads: int,
    head_dim: int,
    world_size: int,
    kv_heads: int | None = None,
    dtype: str = "bf16",
) -> float:
    r"""Bytes one rank sends in one transformer layer's forward pass under ``scheme``.

    :param scheme: ``"ulysses"``, ``"ring"`` or ``"megatron"`` (Megatron-LM's sequence parallelism with TP).
    :param batch: :math:`B`.
    :param seq_len: :math:`S`, tokens of the whole sequence (padded up to a multiple of the world size).
    :param heads: :math:`H`.
    :param head_dim: :math:`d`.
    :param world_size: :math:`N`, ranks sharing the sequence.
    :param kv_heads: :math:`H_{kv}` (default :math:`H`).
    :param dtype: a name of :data:`~infralens.core.DTYPE_BYTES`.
    :returns: bytes.

    >>> kw = dict(batch=1, seq_len=32_768, heads=32, head_dim=128, world_size=8)
    >>> [sequence_parallel_bytes(s, **kw) / 2**20 for s in SEQUENCE_SCHEMES]   # MiB
    [112.0, 448.0, 896.0]
    """
    if scheme not in SEQUENCE_SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SEQUENCE_SCHEMES)}, e.g. scheme='ulysses'; got {scheme!r}")
    B = positive_int("batch", batch, example=1)
    n = positive_int("world_size", world_size, example=8)
    s = padded_length(seq_len, n) // n
    H = positive_int("heads", heads, example=32)
    Hkv = H if kv_heads is None else positive_int("kv_heads", kv_heads, example=8)
    d = positive_int("head_dim", head_dim, example=128)
    b = dtype_bytes(dtype)
    if scheme == "ulysses":
        return (n - 1) / n * B * s * d * (2 * H + 2 * Hkv) * b  # all-to-all of Q, K, V, O shards
    if scheme == "ring":
        return float((n - 1) * B * s * d * 2 * Hkv * b)  # my K and V block, passed N - 1 times
    return 4 * (n - 1) / n * B * n * s * H * d * b  # all-gather + reduce-scatter, twice
