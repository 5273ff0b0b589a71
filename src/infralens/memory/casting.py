r"""Layerwise casting: store weights in a small dtype, compute in a large one.

diffusers' ``enable_layerwise_casting`` (``hooks/layerwise_casting.py``) walks a
model's children and, for every supported *leaf* layer (linear, convolution,
embedding) whose name matches no skip pattern, casts the layer to a storage dtype
(``float8_e4m3fn`` by default) and wraps its call: cast up to the compute dtype,
run, cast back down. What it saves and what it does not:

* stored bytes: each cast weight takes :math:`b_\text{storage}` bytes per element
  instead of :math:`b_\text{compute}`; skipped layers (norms, patch embeddings,
  ``proj_out``, the model's own patterns) and parameters that belong to no leaf
  layer (a DiT's ``scale_shift_table``) keep their dtype;
* compute: unchanged in dtype. The matmul runs in the compute dtype on an
  upcast copy of the weight (one layer at a time), so the arithmetic is not fp8
  and not faster; the weights are rounded once, to the storage dtype's grid.

.. math:: \text{stored} = \sum_{\text{cast}} n_p\,b_\text{storage} + \sum_{\text{kept}} n_p\,b_p
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

LAYERWISE_CASTING_LAYERS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
)
"""The leaf layers that are cast (diffusers 0.42.1's supported layers)."""

LAYERWISE_SKIP_PATTERNS = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$")
"""Module names (regular expressions, searched) left in their dtype, diffusers' default."""


def _dtype(name: str, value: object) -> torch.dtype:
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"{name} must be a floating-point torch.dtype, e.g. {name}=torch.bfloat16; got {value!r}")
    return value


def enable_layerwise_casting(
    model: nn.Module,
    storage_dtype: torch.dtype = torch.float8_e4m3fn,
    compute_dtype: torch.dtype = torch.bfloat16,
    *,
    skip_patterns: Iterable[str] = LAYERWISE_SKIP_PATTERNS,
) -> list[str]:
    r"""Cast the supported leaf layers of ``model`` to ``storage_dtype``; upcast each one only while it runs.

    :param model: any module; modified in place.
    :param storage_dtype: the dtype the weights live in between calls.
    :param compute_dtype: the dtype each layer is cast to for its forward.
    :param skip_patterns: regular expressions; a layer whose dotted name matches one (``re.search``),
        or lies under a module that matches, is not cast.
    :returns: the names of the layers that were cast, in module order.

    >>> net = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    >>> enable_layerwise_casting(net, torch.float8_e4m3fn, torch.float32)
    ['0', '2']
    >>> net[0].weight.dtype, net[1].weight.dtype
    (torch.float8_e4m3fn, torch.float32)
    >>> net(torch.randn(3, 8)).dtype, net[0].weight.dtype       # computed in float32, stored in fp8
    (torch.float32, torch.float8_e4m3fn)
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, e.g. TinyDiT(); got {type(model).__name__}")
    storage, compute = _dtype("storage_dtype", storage_dtype), _dtype("compute_dtype", compute_dtype)
    patterns = tuple(skip_patterns)
    if not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"skip_patterns must be strings (regular expressions), e.g. ('norm',); got {patterns!r}")
    cast: list[str] = []

    def up(layer: nn.Module, args: tuple) -> None:
        layer.to(dtype=compute)  # before the call: the weights in the compute dtype

    def down(layer: nn.Module, args: tuple, out: object) -> None:
        layer.to(dtype=storage)  # after it: back to storage (exact, the values came from there)

    def visit(module: nn.Module, prefix: str) -> None:
        if prefix and any(re.search(p, prefix) for p in patterns):
            return  # this module and everything under it keep their dtype
        if isinstance(module, LAYERWISE_CASTING_LAYERS):
            module.to(dtype=storage)
            module.register_forward_pre_hook(up)
            module.register_forward_hook(down)
            cast.append(prefix)
            return
        for name, child in module.named_children():
            visit(child, f"{prefix}.{name}" if prefix else name)

    visit(model, "")
    return cast


def stored_bytes(model: nn.Module) -> dict[torch.dtype, int]:
    """Bytes of ``model``'s parameters and buffers, by dtype (shared tensors counted once).

    >>> stored_bytes(nn.Linear(4, 2))
    {torch.float32: 40}
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, e.g. TinyDiT(); got {type(model).__name__}")
    seen: set[int] = set()
    found: dict[torch.dtype, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) in seen:
            continue
        seen.add(id(t))
        found[t.dtype] = found.get(t.dtype, 0) + t.numel() * t.element_size()
    return found
