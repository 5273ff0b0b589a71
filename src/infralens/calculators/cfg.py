r"""Classifier-free guidance: denoiser calls per generation and the cost multiplier.

With guidance every step evaluates the denoiser on the conditional and the
unconditional input (as one doubled batch or as two passes), so

.. math:: \text{calls} = S \cdot (2 \text{ if } w > 1 \text{ else } 1).

diffusers turns guidance on when ``guidance_scale > 1``
(``do_classifier_free_guidance``); at :math:`w = 1` the guided prediction equals
the conditional one, so the second call would be wasted.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from infralens.diffusion._args import positive_int


@dataclass(frozen=True)
class CfgCost:
    steps: int
    guidance_scale: float | None
    guided: bool
    calls: int
    """Denoiser evaluations (batch items of one sample) over the whole generation."""
    multiplier: float
    """Calls relative to the same generation without guidance."""


def cfg_cost(*, steps: int, guidance_scale: float | None = None) -> CfgCost:
    """Denoiser calls :math:`S \\cdot (2 \\text{ if } w > 1 \\text{ else } 1)` for ``steps`` steps.

    >>> cfg_cost(steps=50, guidance_scale=7.5).calls, cfg_cost(steps=50, guidance_scale=1.0).calls
    (100, 50)
    """
    s = positive_int("steps", steps, example=50)
    if guidance_scale is not None and (
        isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real)
    ):
        raise ValueError(f"guidance_scale must be a number, e.g. guidance_scale=5.0; got {guidance_scale!r}")
    guided = guidance_scale is not None and guidance_scale > 1
    per_step = 2 if guided else 1
    return CfgCost(s, guidance_scale, guided, s * per_step, float(per_step))
