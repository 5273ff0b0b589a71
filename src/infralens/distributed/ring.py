r"""The ring all-reduce, step by step: a schedule, and the same schedule run with point-to-point sends.

Each of :math:`N` ranks splits its tensor into :math:`N` chunks. In the
*reduce-scatter* phase, at step :math:`s = 0, \dots, N-2`, rank :math:`r` sends
chunk :math:`(r - s) \bmod N` to rank :math:`r + 1` and adds the chunk it receives
from rank :math:`r - 1` into its own copy; after :math:`N - 1` steps rank :math:`r`
holds chunk :math:`(r + 1) \bmod N` summed over every rank. The *all-gather*
phase passes the finished chunks around the ring for :math:`N - 1` more steps.
Every rank sends one chunk per step, so each sends

.. math:: 2\,(N - 1) \cdot \frac{n}{N} \text{ bytes}

in :math:`2(N-1)` steps, whatever :math:`N`: the bandwidth term of the
all-reduce does not grow with the ring. :func:`ring_allreduce` runs this
schedule with ``torch.distributed`` sends and receives and returns the bytes it
sent, which is how the tests check :func:`~infralens.distributed.ring_allreduce_bytes`
by measurement.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist

from infralens.core import positive_int


class RingSend(NamedTuple):
    """One transfer of the ring: at ``step``, ``src`` sends chunk ``chunk`` to ``dst`` (``phase`` says what for)."""

    step: int
    phase: str  # "reduce-scatter" (the receiver adds the chunk) or "all-gather" (it copies it)
    src: int
    dst: int
    chunk: int


def ring_allreduce_schedule(world_size: int) -> list[RingSend]:
    r"""Every transfer of a ring all-reduce over ``world_size`` ranks, in step order.

    :param world_size: :math:`N`.
    :returns: :math:`2(N-1) \cdot N` sends; rank :math:`r` always sends to :math:`(r + 1) \bmod N`.

    >>> [(s.step, s.src, s.chunk) for s in ring_allreduce_schedule(3) if s.phase == "reduce-scatter"]
    [(0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 0, 2), (1, 1, 0), (1, 2, 1)]
    """
    n = positive_int("world_size", world_size, example=4)
    sends = []
    for step in range(2 * (n - 1)):
        phase, s = ("reduce-scatter", step) if step < n - 1 else ("all-gather", step - (n - 1))
        offset = 0 if phase == "reduce-scatter" else 1  # after the reduce-scatter rank r owns chunk r + 1
        for rank in range(n):
            sends.append(RingSend(step, phase, rank, (rank + 1) % n, (rank + offset - s) % n))
    return sends


def ring_allreduce(tensor: torch.Tensor, *, group: dist.ProcessGroup | None = None) -> int:
    """Sum ``tensor`` over the ranks of ``group`` in place, by the ring schedule, and return the bytes this rank sent.

    Equal to ``dist.all_reduce(tensor)`` (up to the order of floating-point
    additions); call it on every rank of the group.

    :param tensor: a contiguous tensor of the same shape on every rank.
    :param group: the process group (the default group if ``None``).
    :returns: bytes this rank sent.
    """
    n, rank = dist.get_world_size(group), dist.get_rank(group)
    if not tensor.is_contiguous():
        raise ValueError("tensor must be contiguous, e.g. tensor = tensor.contiguous()")
    chunks = list(torch.tensor_split(tensor.view(-1), n))  # N views into the caller's tensor
    right = dist.get_global_rank(group, (rank + 1) % n) if group is not None else (rank + 1) % n
    left = dist.get_global_rank(group, (rank - 1) % n) if group is not None else (rank - 1) % n
    schedule = ring_allreduce_schedule(n)
    sent = 0
    for step in range(2 * (n - 1)):
        mine = next(t for t in schedule if t.step == step and t.src == rank)
        incoming = next(t for t in schedule if t.step == step and t.dst == rank)
        outgoing = chunks[mine.chunk].clone()  # what leaves this rank at this step
        received = torch.empty_like(chunks[incoming.chunk])
        request = dist.isend(outgoing, dst=right, group=group)
        dist.recv(received, src=left, group=group)
        request.wait()
        sent += outgoing.numel() * outgoing.element_size()
        if incoming.phase == "reduce-scatter":
            chunks[incoming.chunk].add_(received)  # a partial sum travels one hop further
        else:
            chunks[incoming.chunk].copy_(received)  # a finished chunk is copied
    return sent
