"""Deterministic weights for the stand-in networks, without touching the caller's random state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded by ``seed``, then restore the caller's state.

    The tiny models build their weights inside it, so the same seed gives the
    same weights on every machine and building a model does not change what the
    caller's next ``torch.randn`` returns.

    >>> _ = torch.manual_seed(1); before = torch.rand(1)
    >>> _ = torch.manual_seed(1)
    >>> with seeded(0):
    ...     a = torch.rand(1)
    >>> torch.equal(torch.rand(1), before)  # the caller's stream is untouched
    True
    >>> with seeded(0):
    ...     torch.equal(torch.rand(1), a)
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
