r"""The KV cache of a decoder: per layer, the keys and values of every token seen, appended one step at a time.

Prefill writes the prompt's keys and values into every layer; each decode step
appends one position. Per layer the cache holds two tensors of shape
``(B, H_kv, S, Dh)``: one per *key/value* head, not per query head, and the
keys already rotated by RoPE. Its size is what
:func:`infralens.calculators.kv_cache_bytes` computes,

.. math:: \text{bytes} = 2 \cdot L \cdot B \cdot S \cdot H_{kv} \cdot d_h \cdot \text{bytes per value}

and :attr:`KVCache.nbytes` measures it on the tensors themselves. This is the
layout of transformers' ``DynamicCache`` (``tox -e upstream`` compares them).
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values per layer, ``(B, H_kv, S, Dh)`` each, growing along ``S`` (like ``DynamicCache``).

    >>> cache = KVCache()
    >>> k = v = torch.zeros(1, 2, 5, 16)                        # prefill: 5 tokens
    >>> _ = cache.update(0, k, v)
    >>> keys, values = cache.update(0, k[:, :, :1], v[:, :, :1])  # one decode step
    >>> keys.shape, cache.seq_len, cache.nbytes
    (torch.Size([1, 2, 6, 16]), 6, 1536)
    """

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        """Per layer, ``(B, H_kv, S, Dh)``."""
        self.values: list[torch.Tensor] = []
        """Per layer, ``(B, H_kv, S, Dh)``."""

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's ``key`` and ``value`` ``(B, H_kv, S_new, Dh)`` to layer ``layer_idx``; return all of it.

        Layers are filled in order (layer 0 first), as a forward pass visits them.
        """
        for name, t in (("key", key), ("value", value)):
            if not isinstance(t, torch.Tensor) or t.ndim != 4:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name} must have 4 axes (B, H_kv, S, Dh), e.g. (1, 8, 1, 128); got {got}")
        if layer_idx == len(self.keys):  # first visit of this layer: prefill
            self.keys.append(key)
            self.values.append(value)
        elif 0 <= layer_idx < len(self.keys):
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], key], dim=-2)  # (B, H_kv, S + S_new, Dh)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], value], dim=-2)
        else:
            raise ValueError(
                f"layer_idx must be at most {len(self.keys)} (layers are filled in order); got {layer_idx}"
            )
        return self.keys[layer_idx], self.values[layer_idx]

    @property
    def num_layers(self) -> int:
        """Layers with entries."""
        return len(self.keys)

    @property
    def seq_len(self) -> int:
        """Tokens cached (in layer 0; every layer holds the same count after a full forward pass)."""
        return self.keys[0].shape[-2] if self.keys else 0

    @property
    def nbytes(self) -> int:
        """Bytes of every cached tensor, measured: ``sum(t.numel() * t.element_size())``."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))
