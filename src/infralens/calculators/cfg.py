r"""Classifier-free guidance: denoiser calls per generation and the cost multiplier.

With guidance every step evaluates the denoiser on the conditional and on the
unconditional input (as one doubled batch, or as two calls), so for :math:`S`
steps and guidance scale :math:`w`

.. math:: \text{calls} = S \cdot \begin{cases} 2 & w > 1 \\ 1 & \text{otherwise} \end{cases}

counted in samples through the denoiser. This is diffusers' rule: its
pipelines' ``do_classifier_free_guidance`` is ``guidance_scale > 1`` (the
Stable Diffusion pipelines also require a UNet without a guidance embedding).
At :math:`w = 1` the guided prediction equals the conditional one, so the
second call would be wasted.

Guidance-distilled pipelines (FLUX.1-dev, HunyuanVideo) pass ``guidance_scale``
to the transformer as an input and never double for it: their switch is
``true_cfg_scale > 1`` (with a negative prompt). Give ``true_cfg_scale`` for
those, and the rule reads it instead of ``guidance_scale``. Second-order
schedulers (Heun, KDPM2) call the denoiser :math:`2S - 1` times; the count here
is per step of a first-order scheduler.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from infralens.core.args import positive_int

DIFFUSERS_CFG_DEFAULTS: Mapping[str, Mapping[str, float | int | None]] = MappingProxyType(
    {
        "StableDiffusionPipeline": MappingProxyType({"steps": 50, "guidance_scale": 7.5, "true_cfg_scale": None}),
        "StableDiffusionXLPipeline": MappingProxyType({"steps": 50, "guidance_scale": 5.0, "true_cfg_scale": None}),
        "StableDiffusion3Pipeline": MappingProxyType({"steps": 28, "guidance_scale": 7.0, "true_cfg_scale": None}),
        "WanPipeline": MappingProxyType({"steps": 50, "guidance_scale": 5.0, "true_cfg_scale": None}),
        "FluxPipeline": MappingProxyType({"steps": 28, "guidance_scale": 3.5, "true_cfg_scale": 1.0}),
        "HunyuanVideoPipeline": MappingProxyType({"steps": 50, "guidance_scale": 6.0, "true_cfg_scale": 1.0}),
    }
)
"""The ``__call__`` defaults of diffusers 0.42.1 pipelines that set the guidance cost.

``steps`` is ``num_inference_steps``; ``true_cfg_scale`` is ``None`` for a
pipeline without that argument (its CFG switch is ``guidance_scale``).
``tests/upstream`` reads every entry from the pipelines' signatures.

>>> DIFFUSERS_CFG_DEFAULTS["FluxPipeline"]["true_cfg_scale"]
1.0
"""


@dataclass(frozen=True)
class CfgCost:
    """Denoiser work of one generation with or without classifier-free guidance."""

    steps: int
    """:math:`S`, denoising steps."""
    guidance_scale: float | None
    """:math:`w`; ``None`` means no guidance."""
    true_cfg_scale: float | None
    """The switch of a guidance-distilled pipeline; ``None`` if the pipeline has none."""
    guided: bool
    """Whether CFG runs: ``guidance_scale > 1``, or ``true_cfg_scale > 1`` when that is given."""
    calls: int
    """Denoiser evaluations (samples through the denoiser) over the whole generation."""
    multiplier: float
    """:attr:`calls` relative to the same generation without guidance: 2 or 1."""


def _scale(name: str, value: object) -> float | None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number, e.g. {name}=5.0; got {value!r}")
    return value


def cfg_cost(*, steps: int, guidance_scale: float | None = None, true_cfg_scale: float | None = None) -> CfgCost:
    r"""Denoiser calls :math:`S \cdot 2` when guidance runs, else :math:`S`.

    :param steps: :math:`S`, denoising steps (>= 1).
    :param guidance_scale: :math:`w`, a finite number; ``None`` for no guidance.
    :param true_cfg_scale: for guidance-distilled pipelines (FLUX, HunyuanVideo): their CFG switch.
        When given, ``guidance_scale`` is an input of the transformer and costs nothing extra.
    :returns: a :class:`CfgCost`.

    >>> cfg_cost(steps=50, guidance_scale=7.5).calls, cfg_cost(steps=50, guidance_scale=1.0).calls
    (100, 50)
    >>> cfg_cost(steps=28, guidance_scale=3.5, true_cfg_scale=1.0).calls   # FluxPipeline's defaults
    28
    """
    s = positive_int("steps", steps, example=50)
    w = _scale("guidance_scale", guidance_scale)
    switch = _scale("true_cfg_scale", true_cfg_scale) if true_cfg_scale is not None else w
    guided = switch is not None and switch > 1
    per_step = 2 if guided else 1
    return CfgCost(s, w, true_cfg_scale, guided, s * per_step, float(per_step))


def pipeline_cfg_cost(pipeline: str, **overrides: float | int | None) -> CfgCost:
    """:func:`cfg_cost` with a diffusers pipeline's defaults (:data:`DIFFUSERS_CFG_DEFAULTS`), some overridden.

    :param pipeline: a key of :data:`DIFFUSERS_CFG_DEFAULTS`, e.g. ``"FluxPipeline"``.
    :param overrides: ``steps``, ``guidance_scale`` or ``true_cfg_scale``.
    :returns: a :class:`CfgCost`.

    >>> pipeline_cfg_cost("WanPipeline").calls, pipeline_cfg_cost("FluxPipeline").calls
    (100, 28)
    >>> pipeline_cfg_cost("FluxPipeline", true_cfg_scale=4.0).calls
    56
    """
    if pipeline not in DIFFUSERS_CFG_DEFAULTS:
        raise ValueError(
            f"pipeline must be one of {', '.join(DIFFUSERS_CFG_DEFAULTS)}, "
            f"e.g. pipeline='FluxPipeline'; got {pipeline!r}"
        )
    unknown = sorted(set(overrides) - {"steps", "guidance_scale", "true_cfg_scale"})
    if unknown:
        raise ValueError(f"overrides must be steps, guidance_scale or true_cfg_scale, e.g. steps=30; got {unknown}")
    args = dict(DIFFUSERS_CFG_DEFAULTS[pipeline]) | overrides
    return cfg_cost(**args)
