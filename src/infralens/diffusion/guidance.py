r"""Classifier-free guidance: extrapolate from the unconditional prediction towards the conditional one.

.. math:: \hat\epsilon = \hat\epsilon_\varnothing + w\,(\hat\epsilon_c - \hat\epsilon_\varnothing)
"""

from __future__ import annotations

import numbers

import torch

from ._args import same_shape


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    r"""Guided prediction :math:`\hat\epsilon_\varnothing + w\,(\hat\epsilon_c - \hat\epsilon_\varnothing)`.

    :math:`w = 1` returns the conditional prediction, :math:`w = 0` the
    unconditional one, :math:`w > 1` pushes further along the difference.

    :param uncond: :math:`\hat\epsilon_\varnothing`, the prediction without the prompt (or with the negative prompt).
    :param cond: :math:`\hat\epsilon_c`, the prediction with the prompt, same shape.
    :param scale: :math:`w`, the guidance scale (``guidance_scale`` in diffusers).
    :returns: the guided prediction, same shape and dtype.

    >>> import torch
    >>> u, c = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    >>> torch.allclose(cfg_combine(u, c, 1.0), c, atol=1e-6)
    True
    >>> torch.allclose(cfg_combine(u, c, 7.5), u + 7.5 * (c - u), atol=1e-5)
    True
    """
    same_shape("uncond", uncond, "cond", cond)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ValueError(f"scale must be a real number, e.g. scale=7.5; got {scale!r}")
    return torch.lerp(uncond, cond, float(scale))  # one pass; lerp extrapolates for scale > 1
