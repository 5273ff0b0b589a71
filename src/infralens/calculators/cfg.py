r"""Classifier-free guidance: denoiser calls per generation and the cost multiplier.

With guidance every step evaluates the denoiser on the conditional and on the
unconditional input (as one doubled batch, or as two calls), so for :math:`S`
steps and guidance scale :math:`w`

.. math:: \text{calls} = S \cdot \begin{cases} 2 & w > 1 \\ 1 & \text{otherwise} \end{cases}

counted in samples through the denoiser. This is diffusers' rule: its
pipelines' ``do_classifier_free_guidance`` is ``guidance_scale > 1`` (the
Stable Diffusion pipelines also require a UNet without a guidance embedding).
At :math:`w = 1` the guided prediction equals the conditional one, so the
second call would be wasted. Guidance-distilled models that take :math:`w` as
an input (FLUX.1-dev's ``guidance_embeds``) make one call per step at any scale.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from infralens.diffusion._args import positive_int


@dataclass(frozen=True)
class CfgCost:
    """Denoiser work of one generation with or without classifier-free guidance."""

    steps: int
    """:math:`S`, denoising steps."""
    guidance_scale: float | None
    """:math:`w`; ``None`` means no guidance."""
    guided: bool
    """Whether guidance runs: :math:`w > 1`."""
    calls: int
    """Denoiser evaluations (samples through the denoiser) over the whole generation."""
    multiplier: float
    """:attr:`calls` relative to the same generation without guidance: 2 or 1."""


def cfg_cost(*, steps: int, guidance_scale: float | None = None) -> CfgCost:
    r"""Denoiser calls :math:`S \cdot 2` when :math:`w > 1`, else :math:`S`.

    :param steps: :math:`S`, denoising steps (>= 1).
    :param guidance_scale: :math:`w`, a finite number; ``None`` for no guidance.
    :returns: a :class:`CfgCost`.

    >>> cfg_cost(steps=50, guidance_scale=7.5).calls, cfg_cost(steps=50, guidance_scale=1.0).calls
    (100, 50)
    """
    s = positive_int("steps", steps, example=50)
    if guidance_scale is not None and (
        isinstance(guidance_scale, bool)
        or not isinstance(guidance_scale, numbers.Real)
        or not math.isfinite(guidance_scale)
    ):
        raise ValueError(f"guidance_scale must be a finite number, e.g. guidance_scale=5.0; got {guidance_scale!r}")
    guided = guidance_scale is not None and guidance_scale > 1
    per_step = 2 if guided else 1
    return CfgCost(s, guidance_scale, guided, s * per_step, float(per_step))
