r"""Splitting a sequence over ranks: padding, shards, and the two collectives of Megatron's sequence parallelism.

Sequence (context) parallelism gives rank :math:`r` of :math:`N` the positions
:math:`[r s, (r + 1) s)` of a sequence padded to :math:`N s` tokens,
:math:`s = \lceil S / N \rceil`. Padding goes at the end; attention must then
hide the padded keys (:func:`key_visible`), and the padded rows of the output
are dropped when the shards are gathered.

Megatron-LM's sequence parallelism (Korthikanti et al. 2022) keeps the
activations *between* tensor-parallel regions (layer norm, dropout, the
residual) split on the sequence axis. Entering a tensor-parallel region, an
all-gather :math:`g` rebuilds the whole sequence; leaving it, a reduce-scatter
:math:`\bar g` sums the row-parallel partial outputs and keeps this rank's
tokens. An all-reduce is a reduce-scatter followed by an all-gather, so this
moves the same bytes as plain tensor parallelism while each rank stores
:math:`1/N` of those activations.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from infralens.core import positive_int


def padded_length(seq_len: int, world_size: int) -> int:
    r""":math:`N \lceil S / N \rceil`: the sequence length after padding to whole, equal shards.

    >>> padded_length(13, 2), padded_length(12, 4)
    (14, 12)
    """
    s = positive_int("seq_len", seq_len, example=4096)
    n = positive_int("world_size", world_size, example=2)
    return -(-s // n) * n


def split_sequence(x: torch.Tensor, rank: int, world_size: int, *, dim: int = 2) -> torch.Tensor:
    """Rank ``rank``'s shard of ``x`` along ``dim``, after zero-padding that axis to :func:`padded_length`.

    :param x: the whole tensor, e.g. ``(B, H, S, Dh)`` with ``dim=2`` or ``(B, S, D)`` with ``dim=1``.
    :param rank: which shard, ``0 <= rank < world_size``.
    :param world_size: :math:`N`, ranks sharing the sequence.
    :param dim: the sequence axis.
    :returns: ``x``'s positions ``[rank * s, (rank + 1) * s)``, :math:`s = \\lceil S/N \\rceil` (a copy).

    >>> x = torch.arange(5.0).view(1, 5, 1)           # (B, S, D) with S = 5
    >>> [split_sequence(x, r, 2, dim=1).flatten().tolist() for r in range(2)]
    [[0.0, 1.0, 2.0], [3.0, 4.0, 0.0]]
    """
    n = positive_int("world_size", world_size, example=2)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < n:
        raise ValueError(f"rank must be a whole number in [0, world_size={n}), e.g. rank=0; got {rank!r}")
    seq = x.shape[dim]
    s = padded_length(seq, n) // n
    pad = s * n - seq
    if pad:
        zeros = torch.zeros((*x.shape[:dim], pad, *x.shape[dim + 1 :]), dtype=x.dtype, device=x.device)
        x = torch.cat([x, zeros], dim=dim)  # padding at the end: the last rank holds it
    return x.narrow(dim, rank * s, s).clone()


def shard_positions(seq_len: int, rank: int, world_size: int) -> torch.Tensor:
    """The global positions of rank ``rank``'s tokens (padding included): ``arange(rank * s, (rank + 1) * s)``.

    >>> shard_positions(13, 1, 2).tolist()
    [7, 8, 9, 10, 11, 12, 13]
    """
    s = padded_length(seq_len, world_size) // world_size
    return torch.arange(rank * s, (rank + 1) * s)


def key_visible(
    q_positions: torch.Tensor, k_positions: torch.Tensor, *, seq_len: int, causal: bool
) -> torch.Tensor | None:
    """Boolean ``(S_q, S_k)`` mask: a key is visible if it is not padding (and, if ``causal``, not in the future).

    Returns ``None`` when every key is visible, so callers can take the unmasked path.

    >>> key_visible(torch.arange(3), torch.arange(4), seq_len=3, causal=True).int().tolist()
    [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]]
    """
    real = k_positions < seq_len  # (S_k,) padding is never attended to
    if not causal and bool(real.all()):
        return None
    visible = real[None, :].expand(len(q_positions), -1)  # (S_q, S_k)
    if causal:
        visible = visible & (k_positions[None, :] <= q_positions[:, None])
    return visible


def gather_sequence(
    x: torch.Tensor, *, dim: int = 2, seq_len: int | None = None, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """All-gather the shards of every rank along ``dim`` (Megatron's :math:`g`), and drop the padding.

    :param x: this rank's shard.
    :param dim: the sequence axis.
    :param seq_len: the unpadded length to keep (default: everything gathered).
    :param group: the process group (default: the world).
    :returns: the whole sequence, on every rank.
    """
    n = dist.get_world_size(group)
    x = x.movedim(dim, 0).contiguous()  # (s, ...): all_gather_single concatenates on axis 0
    out = torch.empty((n * x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)  # (N s, ...)
    dist.all_gather_single(out, x, group=group)
    if seq_len is not None:
        out = out[:seq_len]
    return out.movedim(0, dim)


def reduce_scatter_sequence(x: torch.Tensor, *, dim: int = 2, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    r"""Sum ``x`` over the ranks and keep this rank's shard of axis ``dim`` (Megatron's :math:`\bar g`).

    Written as an all-to-all of the :math:`N` shards followed by a local sum,
    which sends :math:`(N-1)/N` of ``x`` per rank, the bandwidth-optimal amount
    (gloo's own ``reduce_scatter_single`` sends twice that: it all-reduces, then
    keeps a shard).

    :param x: this rank's partial sum of the whole sequence; ``x.shape[dim]`` divisible by the world size.
    :param dim: the sequence axis.
    :param group: the process group (default: the world).
    :returns: the summed shard, ``x.shape[dim] / N`` long on axis ``dim``.
    """
    n = dist.get_world_size(group)
    if x.shape[dim] % n:
        raise ValueError(
            f"x.shape[{dim}]={x.shape[dim]} must be divisible by world_size={n}: pad the sequence with "
            f"split_sequence first, e.g. to {padded_length(x.shape[dim], n)}"
        )
    send = x.movedim(dim, 0).contiguous()  # (N s, ...): the s rows of block j go to rank j
    recv = torch.empty_like(send)  # block i: rank i's partial sum of my rows
    dist.all_to_all_single(recv, send, group=group)
    total = recv.view(n, send.shape[0] // n, *send.shape[1:]).sum(dim=0)  # (s, ...)
    return total.movedim(0, dim)
