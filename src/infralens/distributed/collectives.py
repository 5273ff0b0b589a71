r"""Bytes each rank sends in the collectives of data, tensor, sequence and expert parallelism.

For a tensor of :math:`n` bytes on each of :math:`N` ranks, the bandwidth-optimal
algorithms (a ring, or any schedule that sends nothing twice) send, per rank:

.. math:: \text{reduce-scatter}: \frac{N-1}{N}\,n, \quad
   \text{all-gather}: \frac{N-1}{N}\,n, \quad
   \text{all-reduce} = \text{reduce-scatter} + \text{all-gather}: \frac{2(N-1)}{N}\,n

where :math:`n` is the size of the *whole* (reduced or gathered) tensor. An
all-to-all of an :math:`n`-byte buffer per rank keeps :math:`1/N` of it and sends
the rest, :math:`\frac{N-1}{N}\,n`. These are lower bounds on traffic that the
ring attains; a tree all-reduce sends more bytes for fewer steps. NCCL, gloo and
MPI choose their algorithm per message size and topology, so what a library
actually sends is an implementation detail; the tests count the bytes of a ring
written with point-to-point sends.
"""

from __future__ import annotations

from ._args import non_negative, whole_count


def _per_rank(nbytes: float, world_size: int, times: int) -> float:
    n = non_negative("nbytes", nbytes, example=2e9)
    ranks = whole_count("world_size", world_size, example="8")
    return times * (ranks - 1) / ranks * n


def ring_allreduce_bytes(nbytes: float, world_size: int) -> float:
    r"""Bytes each rank sends in a ring all-reduce of an ``nbytes`` tensor: :math:`2(N-1)/N \cdot n`.

    A reduce-scatter (:math:`N-1` steps of :math:`n/N` bytes) then an all-gather
    (:math:`N-1` more). It tends to :math:`2n` as :math:`N` grows, so the time of a
    bandwidth-bound all-reduce barely depends on the number of ranks.

    :param nbytes: :math:`n`, bytes of the tensor every rank holds (and ends with).
    :param world_size: :math:`N`, ranks in the ring.
    :returns: bytes sent by each rank (as many are received).

    >>> ring_allreduce_bytes(2e9, 8) / 1e9           # a 2 GB gradient over 8 ranks
    3.5
    >>> ring_allreduce_bytes(1024, 1)                # one rank sends nothing
    0.0
    """
    # 2 (N - 1) / N * n
    return _per_rank(nbytes, world_size, 2)


def all_gather_bytes(nbytes: float, world_size: int) -> float:
    r"""Bytes each rank sends to gather an ``nbytes`` tensor from :math:`N` equal shards: :math:`(N-1)/N \cdot n`.

    :param nbytes: :math:`n`, bytes of the gathered (whole) tensor.
    :param world_size: :math:`N`.

    >>> all_gather_bytes(800, 4)
    600.0
    """
    # (N - 1) / N * n
    return _per_rank(nbytes, world_size, 1)


def reduce_scatter_bytes(nbytes: float, world_size: int) -> float:
    r"""Bytes each rank sends to reduce an ``nbytes`` tensor and keep one :math:`1/N` shard: :math:`(N-1)/N \cdot n`.

    :param nbytes: :math:`n`, bytes of the whole tensor each rank starts with.
    :param world_size: :math:`N`.

    >>> reduce_scatter_bytes(800, 4)
    600.0
    """
    # (N - 1) / N * n
    return _per_rank(nbytes, world_size, 1)


def all_to_all_bytes(nbytes: float, world_size: int) -> float:
    r"""Bytes each rank sends in an all-to-all of its ``nbytes`` buffer: :math:`(N-1)/N \cdot n` (it keeps :math:`1/N`).

    :param nbytes: :math:`n`, bytes of one rank's input buffer (split into :math:`N` equal parts).
    :param world_size: :math:`N`.

    >>> all_to_all_bytes(800, 2)
    400.0
    """
    # (N - 1) / N * n
    return _per_rank(nbytes, world_size, 1)
