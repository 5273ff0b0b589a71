r"""Passes over memory: which kernels a formula runs on full-size tensors, and the bytes they move.

Elementwise formulas on large latents are limited by memory bandwidth, not
arithmetic: their cost is the number of full-size tensors each kernel reads
and writes. :func:`memory_passes` runs a function under a PyTorch dispatch
mode (``torch.utils._python_dispatch.TorchDispatchMode``), records every ATen
kernel that produces a tensor of the given shape, and counts the full-size
tensors it reads and writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ALLOCATORS = {"empty", "empty_like", "empty_strided", "new_empty"}
"""Kernels that only allocate: they move no data until something writes into the tensor."""


@dataclass(frozen=True)
class Pass:
    """One kernel over full-size tensors."""

    kernel: str
    """The ATen operator, e.g. ``mul`` or ``add_``."""
    reads: int
    """Full-size tensors it reads."""
    writes: int
    """Full-size tensors it writes (1)."""


def memory_passes(fn: Callable[[], object], like: torch.Tensor) -> list[Pass]:
    r"""The kernels ``fn()`` runs that write a tensor shaped like ``like``, with what they read.

    The bytes moved are :math:`\sum (\text{reads} + \text{writes}) \times N \times \text{itemsize}`
    for :math:`N` elements.

    :param fn: a function of no arguments (close over the tensors).
    :param like: a tensor with the full size to look for.
    :returns: one :class:`Pass` per such kernel, in order.

    >>> x, y = torch.randn(4, 1000), torch.randn(4, 1000)
    >>> [(p.kernel, p.reads, p.writes) for p in memory_passes(lambda: torch.lerp(x, y, 0.3), x)]
    [('lerp', 2, 1)]
    >>> [(p.kernel, p.reads, p.writes) for p in memory_passes(lambda: 2 * x + 3 * y, x)]
    [('mul', 1, 1), ('mul', 1, 1), ('add', 2, 1)]
    """
    found: list[Pass] = []

    def full(t: object) -> bool:
        return isinstance(t, torch.Tensor) and t.shape == like.shape

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if full(out) and func.overloadpacket.__name__ not in ALLOCATORS:
                reads = sum(full(a) for a in (*args, *kwargs.values()) if a is not kwargs.get("out"))
                found.append(Pass(func.overloadpacket.__name__, reads, 1))
            return out

    with Recorder():
        fn()
    return found


def bytes_moved(passes: list[Pass], like: torch.Tensor) -> int:
    """Bytes the passes read and write: (reads + writes) x elements x itemsize, summed.

    >>> x = torch.zeros(1000)
    >>> bytes_moved([Pass("lerp", 2, 1)], x)
    12000
    """
    return sum(p.reads + p.writes for p in passes) * like.numel() * like.element_size()
