r"""Flow-matching sigma schedules as DiffSynth-Studio builds them for Wan and FLUX.1.

Both templates space :math:`N` noise levels evenly and then apply the shift
:math:`\sigma' = s\sigma / (1 + (s - 1)\sigma)` (:func:`shift_sigmas`); they
differ in where the even grid ends and in the default shift:

* ``"Wan"``: :math:`N + 1` points from :math:`\sigma_\text{start}` to 0, the last
  dropped; shift 5 by default;
* ``"FLUX.1"``: :math:`N` points from :math:`\sigma_\text{start}` to
  :math:`\sigma_\text{min} = 0.003 / 1.002`; shift 3 by default.

with :math:`\sigma_\text{start} = \sigma_\text{min} + (1 - \sigma_\text{min})\cdot`
``denoising_strength``. The sampling loop visits these :math:`N` sigmas and
its last Euler step goes to :math:`\sigma = 0`. Timesteps are
:math:`1000\,\sigma`. (Read in DiffSynth-Studio 2.1.12,
``diffsynth/diffusion/flow_match.py``; cross-checked by ``tox -e upstream``.)
"""

from __future__ import annotations

import numbers

import torch

from ._args import positive_int
from .flow import shift_sigmas

FLOW_TEMPLATES: dict[str, dict[str, float]] = {
    "Wan": {"sigma_min": 0.0, "shift": 5.0},
    "FLUX.1": {"sigma_min": 0.003 / 1.002, "shift": 3.0},
}
"""The templates :func:`flow_sigmas` knows, with their smallest sigma and default shift."""


def flow_sigmas(
    template: str, num_inference_steps: int, *, shift: float | None = None, denoising_strength: float = 1.0
) -> torch.Tensor:
    r"""The :math:`N` sigmas a flow-matching loop visits, highest first, shape ``(N,)``.

    :param template: ``"Wan"`` or ``"FLUX.1"`` (DiffSynth-Studio's template names).
    :param num_inference_steps: :math:`N`.
    :param shift: :math:`s`; the template's default when ``None``.
    :param denoising_strength: in ``(0, 1]``; below 1 the loop starts part-way (image-to-image).
    :returns: sigmas in float32, the dtype DiffSynth uses.

    >>> flow_sigmas("Wan", 4, shift=1.0)
    tensor([1.0000, 0.7500, 0.5000, 0.2500])
    >>> s = flow_sigmas("FLUX.1", 50)
    >>> s.shape, round(s[0].item(), 4)
    (torch.Size([50]), 1.0)
    """
    if template not in FLOW_TEMPLATES:
        raise ValueError(f"template must be one of {', '.join(map(repr, FLOW_TEMPLATES))}; got {template!r}")
    n = positive_int("num_inference_steps", num_inference_steps, example=50)
    spec = FLOW_TEMPLATES[template]
    s = spec["shift"] if shift is None else shift
    strength = denoising_strength
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not 0 < strength <= 1:
        raise ValueError(f"denoising_strength must lie in (0, 1], e.g. denoising_strength=1.0; got {strength!r}")
    lo = spec["sigma_min"]
    start = lo + (1.0 - lo) * strength
    if template == "Wan":
        grid = torch.linspace(start, lo, n + 1, dtype=torch.float64)[:-1]  # (N,) the end point 0 is dropped
    else:
        grid = torch.linspace(start, lo, n, dtype=torch.float64)  # (N,) ends at sigma_min
    return shift_sigmas(grid, s).float()
