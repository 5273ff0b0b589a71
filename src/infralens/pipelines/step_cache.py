r"""First-block cache: skip a transformer's remaining blocks when its first block's change is small.

Consecutive denoising steps feed a DiT almost the same latent, so almost the
same residuals come out of its blocks. The first-block cache (diffusers'
``FirstBlockCacheConfig``, after ParaAttention) always runs the first block and
compares what it added, :math:`r = \text{block}_0(h) - h`, with what it added at
the last step that ran in full:

.. math:: \delta = \frac{\operatorname{mean}|r - r_\text{ref}|}{\operatorname{mean}|r_\text{ref}|}

If :math:`\delta \le \tau` (the ``threshold``), the other blocks are skipped and
their summed contribution at that reference step, :math:`R = h_\text{last} - h_\text{first}`,
is added instead; otherwise they run and :math:`r_\text{ref}` and :math:`R` are
renewed. The reference is *not* renewed on a skipped step, so small changes add
up until one full step is forced. A skipped step is an approximation: the output
differs from the uncached one by however much :math:`R` has moved.

State is kept per *context* (``"cond"`` and ``"uncond"`` under classifier-free
guidance, like diffusers' ``cache_context``); calling the model outside a context
is an error, as it is in diffusers.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class CacheDecision:
    """What the cache did at one call of the head block."""

    context: str
    """The cache context (``"cond"``, ``"uncond"``, ...)."""
    change: float | None
    r"""The relative change :math:`\delta` against the reference step (``None`` at the first call)."""
    computed: bool
    """Whether the remaining blocks ran."""


@dataclass
class _State:
    head_output: torch.Tensor | None = None
    head_residual: torch.Tensor | None = None
    tail_residual: torch.Tensor | None = None
    compute: bool = True


class FirstBlockCache:
    r"""Wrap the blocks of a transformer so that all but the first are skipped while its residual barely moves.

    Each block must take the hidden states ``(B, N, D)`` as its first argument and
    return them (Wan's ``WanTransformerBlock``, :class:`~infralens.nets.DiTBlock`).

    :param blocks: the transformer's ``nn.ModuleList`` of at least two blocks.
    :param threshold: :math:`\tau \ge 0`; diffusers' default is 0.05. A step is skipped when
        :math:`\delta \le \tau` (diffusers computes when ``diff > threshold``), so 0 skips only a head
        residual exactly equal to the reference.

    >>> from infralens.nets import DiTBlock
    >>> blocks = nn.ModuleList([DiTBlock(16, 2) for _ in range(3)])
    >>> cache = FirstBlockCache(blocks, threshold=0.1)
    >>> x, c, t = torch.randn(1, 8, 16), torch.randn(1, 4, 16), torch.randn(1, 6, 16)
    >>> def run(x):
    ...     for block in blocks:
    ...         x = block(x, c, t)
    ...     return x
    >>> with cache.context("cond"):
    ...     first = run(x)
    >>> with cache.context("cond"):
    ...     again = run(x)                      # the same input: the head's change is 0
    >>> [d.computed for d in cache.decisions()], cache.skipped_blocks
    ([True, False], 2)
    >>> torch.allclose(again, first, atol=1e-6)
    True
    >>> cache.remove()
    """

    def __init__(self, blocks: nn.ModuleList, *, threshold: float = 0.05):
        if not isinstance(blocks, nn.ModuleList) or len(blocks) < 2:
            raise ValueError(f"blocks must be an nn.ModuleList of at least 2 blocks, e.g. model.blocks; got {blocks!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold >= 0:
            raise ValueError(
                f"threshold must be a number >= 0 (0 skips only exact repeats), e.g. threshold=0.05; got {threshold!r}"
            )
        self.blocks, self.threshold = blocks, float(threshold)
        self.skipped_blocks = 0
        """Block calls skipped so far, over every context."""
        self._states: dict[str, _State] = {}
        self._log: list[CacheDecision] = []
        self._context: str | None = None
        self._originals = [block.forward for block in blocks]
        last = len(blocks) - 1
        for i, block in enumerate(blocks):
            block.forward = self._head(block.forward) if i == 0 else self._tail(block.forward, is_last=i == last)

    @contextlib.contextmanager
    def context(self, name: str) -> Iterator[None]:
        """Calls of the model inside this context share one cache state (one per guidance branch)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, e.g. 'cond'; got {name!r}")
        self._context = name
        try:
            yield
        finally:
            self._context = None

    def decisions(self, context: str | None = None) -> list[CacheDecision]:
        """Every head-block decision so far, in order, of one context or of all."""
        return [d for d in self._log if context is None or d.context == context]

    def remove(self) -> None:
        """Restore the blocks' own ``forward``; the cached tensors are dropped, the decisions kept."""
        for block, original in zip(self.blocks, self._originals, strict=True):
            block.forward = original
        self._states.clear()

    # -- the wrapped forwards ------------------------------------------------------------------

    def _state(self) -> _State:
        if self._context is None:
            raise ValueError(
                "no cache context is set: call the model inside cache.context(name), e.g. "
                "with cache.context('cond'): model(...)"
            )
        return self._states.setdefault(self._context, _State())

    def _head(self, forward):
        def head(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            state = self._state()
            out = forward(hidden_states, *args, **kwargs)  # the head block always runs
            residual = out - hidden_states  # r: what this block added
            change = None
            if state.head_residual is not None:  # delta = mean|r - r_ref| / mean|r_ref|
                ref = state.head_residual
                change = ((residual - ref).abs().mean() / ref.abs().mean()).item()
            state.compute = change is None or change > self.threshold
            self._log.append(CacheDecision(self._context, change, state.compute))
            if not state.compute:  # skip: add what the other blocks added at the reference step
                self.skipped_blocks += len(self.blocks) - 1
                return out + state.tail_residual
            state.head_output, state.head_residual = out, residual  # a new reference
            return out

        return head

    def _tail(self, forward, *, is_last: bool):
        def tail(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            state = self._state()
            if not state.compute:
                return hidden_states  # skipped: pass the cached result through
            out = forward(hidden_states, *args, **kwargs)
            if is_last:  # R: everything after the head block, at this reference step
                state.tail_residual = out - state.head_output
            return out

        return tail
