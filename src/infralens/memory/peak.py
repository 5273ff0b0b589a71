r"""Peak tensor memory of a computation, measured on CPU without a GPU allocator.

Every PyTorch operator passes through the dispatcher. :func:`peak_tensor_bytes`
runs a function under a ``TorchDispatchMode`` that records each new tensor
storage an operator creates and watches it (``weakref.finalize``) until it is
freed. The running sum of live storage bytes, maximised over the run, is the
peak the computation itself added on top of what existed before:

.. math:: \text{peak} = \max_t \sum_{s \text{ created and alive at } t} \text{bytes}(s)

What it sees: every tensor an operator returns (intermediates, outputs, copies).
What it does not see: scratch memory a fused kernel allocates and frees inside
one operator, the caching allocator's reserve and fragmentation on a GPU, and
tensors that existed before the call. On a GPU ``torch.cuda.max_memory_allocated``
measures the allocator instead; this is the CPU stand-in the book can run.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class _LiveStorages(TorchDispatchMode):
    """Track bytes of storages created under this mode while they are alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.alive: dict[int, int] = {}  # data_ptr -> bytes

    def _freed(self, key: int, nbytes: int) -> None:
        if self.alive.pop(key, None) is not None:
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in inputs or key in self.alive:
                continue  # a view or in-place result of an input, or already counted
            self.alive[key] = nbytes
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, nbytes)
        return out


def peak_tensor_bytes(fn: Callable[[], object]) -> int:
    r"""Most bytes of tensor storage that ``fn()`` held alive at once, beyond what existed before.

    :param fn: a function of no arguments (close over the tensors); its result is dropped.
    :returns: :math:`\max_t \sum` bytes of the storages created by ``fn``'s operators and alive at :math:`t`.

    Three 1000 x 1000 float32 matrices alive together are 12 MB; the fourth is
    created after two are freed:

    >>> def f():
    ...     a = torch.randn(1000, 1000)
    ...     b = a @ a
    ...     c = b.softmax(-1)
    ...     del a, b
    ...     return c * 2
    >>> peak_tensor_bytes(f) == 3 * 1000 * 1000 * 4
    True
    """
    if not callable(fn):
        raise ValueError(f"fn must be a function of no arguments, e.g. fn=lambda: x @ x; got {type(fn).__name__}")
    mode = _LiveStorages()
    with mode:
        fn()
    return mode.peak
