"""Weighted sums of two tensors with few passes over memory and no rounded coefficients.

``a * x + b * y`` written with PyTorch operators reads and writes full-size
temporaries three times. Here it is two kernels, ``torch.mul`` then an in-place
``add_`` with ``alpha``, and the coefficients are Python floats (double
precision), never tensors of the data's dtype. What PyTorch 2.13 does with them
on a bfloat16 tensor on the CPU differs between the two kernels: ``torch.mul``
applies the float in float32 and rounds the product once, while ``add_`` rounds
``alpha`` to bfloat16 before it multiplies (a relative change of at most 2^-9, and
never to zero, since bfloat16 keeps float32's exponent range). Per-sample
coefficients (one per item of the leading batch axis) are applied sample by
sample, with the same rule.
"""

from __future__ import annotations

import torch

Coef = float | list[float]


def axpby(a: Coef, x: torch.Tensor, b: Coef, y: torch.Tensor) -> torch.Tensor:
    """``a * x + b * y`` in the dtype of ``x``; ``a`` and ``b`` are floats or per-sample lists.

    >>> x, y = torch.ones(2, 3), torch.full((2, 3), 2.0)
    >>> axpby(0.5, x, 0.25, y)[0].tolist(), axpby([1.0, 2.0], x, [0.0, 1.0], y)[:, 0].tolist()
    ([1.0, 1.0, 1.0], [1.0, 4.0])
    """
    if not isinstance(a, list):
        out = torch.mul(x, a)
        return out.add_(y, alpha=b)
    out = torch.empty_like(x)
    for i, (ai, bi) in enumerate(zip(a, b, strict=True)):
        torch.mul(x[i], ai, out=out[i])
        out[i].add_(y[i], alpha=bi)
    return out


def lerp(x: torch.Tensor, y: torch.Tensor, w: Coef) -> torch.Tensor:
    """``x + w * (y - x)`` in one pass (``torch.lerp`` with a Python-float weight; any ``w``).

    >>> lerp(torch.zeros(2), torch.ones(2), [0.25, 3.0]).tolist()
    [0.25, 3.0]
    """
    if not isinstance(w, list):
        return torch.lerp(x, y, w)
    out = torch.empty_like(x)
    for i, wi in enumerate(w):
        torch.lerp(x[i], y[i], wi, out=out[i])
    return out


def add_scaled(x: torch.Tensor, b: Coef, y: torch.Tensor) -> torch.Tensor:
    """``x + b * y`` in one pass (``torch.add`` with ``alpha``).

    >>> add_scaled(torch.ones(2, 2), [1.0, -1.0], torch.ones(2, 2)).tolist()
    [[2.0, 2.0], [0.0, 0.0]]
    """
    if not isinstance(b, list):
        return torch.add(x, y, alpha=b)
    out = torch.empty_like(x)
    for i, bi in enumerate(b):
        torch.add(x[i], y[i], alpha=bi, out=out[i])
    return out
