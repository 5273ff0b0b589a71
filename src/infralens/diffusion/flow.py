r"""Flow matching (rectified flow): the straight path from data to noise.

.. math:: x_\sigma = \sigma\,\epsilon + (1 - \sigma)\,x_0, \qquad
   \frac{dx_\sigma}{d\sigma} = \epsilon - x_0

:math:`\sigma = 0` is clean data and :math:`\sigma = 1` is pure noise. The model
learns the constant velocity :math:`\epsilon - x_0`; sampling integrates it from
:math:`\sigma = 1` down to :math:`0`. This is the parameterisation of SD3, FLUX
and Wan (diffusers' ``FlowMatchEulerDiscreteScheduler``, DiffSynth's
``FlowMatchScheduler``).
"""

from __future__ import annotations

import torch

from ._args import Scalar, per_sample_floats, same_shape
from ._mix import add_scaled, lerp


def flow_interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: Scalar) -> torch.Tensor:
    r"""A point on the straight path: :math:`x_\sigma = \sigma\,\epsilon + (1-\sigma)\,x_0`.

    :param x0: :math:`x_0`, shape ``(B, ...)``.
    :param noise: :math:`\epsilon`, same shape.
    :param sigma: :math:`\sigma` in ``[0, 1]``, per-sample.
    :returns: :math:`x_\sigma`, shape and dtype of ``x0``.

    >>> import torch
    >>> x0, eps = torch.randn(2, 16, 4, 8, 8), torch.randn(2, 16, 4, 8, 8)
    >>> x = flow_interpolate(x0, eps, torch.tensor([0.0, 0.25]))
    >>> torch.equal(x[0], x0[0]), torch.allclose(x[1], 0.25 * eps[1] + 0.75 * x0[1], atol=1e-6)
    (True, True)
    """
    same_shape("x0", x0, "noise", noise)
    s = per_sample_floats("sigma", sigma, x0, low=0.0, high=1.0, example=0.5)
    return lerp(x0, noise, s)  # one pass: x0 + sigma * (noise - x0)


def flow_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    r"""The flow-matching velocity target :math:`v = \epsilon - x_0` (it does not depend on :math:`\sigma`).

    :param x0: :math:`x_0`, shape ``(B, ...)``.
    :param noise: :math:`\epsilon`, same shape.
    :returns: :math:`v`, same shape and dtype.

    >>> import torch
    >>> x0, eps = torch.randn(2, 3), torch.randn(2, 3)
    >>> torch.equal(flow_target(x0, eps), eps - x0)
    True
    """
    same_shape("x0", x0, "noise", noise)
    return noise - x0


def shift_sigmas(sigmas: torch.Tensor | float, shift: float) -> torch.Tensor:
    r"""Shift a noise level towards noise: :math:`\sigma' = \dfrac{s\,\sigma}{1 + (s - 1)\,\sigma}`.

    With shift :math:`s > 1` the sampler spends more of its steps at high noise,
    which large images and videos need (diffusers 0.42.1 suggests 3.0 for Wan 2.1
    at 480p and 5.0 at 720p, in the WanPipeline example). The map
    keeps 0 at 0 and 1 at 1 and is increasing; the result is clamped to
    ``[0, 1]`` against rounding only.

    :param sigmas: :math:`\sigma` in ``[0, 1]``, any shape.
    :param shift: :math:`s > 0`; 1 leaves the sigmas unchanged.
    :returns: :math:`\sigma'`, same shape, in float32 or better.

    >>> import torch
    >>> shift_sigmas(torch.tensor([0.0, 0.5, 1.0]), 3.0)
    tensor([0.0000, 0.7500, 1.0000])
    """
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not shift > 0:
        raise ValueError(f"shift must be a number > 0, e.g. shift=3.0; got {shift!r}")
    s = torch.as_tensor(sigmas)
    s = s.to(torch.promote_types(s.dtype, torch.float32)) if s.is_floating_point() else s.float()
    if torch.isnan(s).any() or (s < 0).any() or (s > 1).any():
        raise ValueError("sigmas must lie in [0, 1], e.g. torch.linspace(1, 0, 51)")
    # mathematically in [0, 1]; the clamp only removes rounding (0.2 * 1 / 0.2 = 1.0000000000000002)
    return (shift * s / (1 + (shift - 1) * s)).clamp(0, 1)


def flow_euler_step(x_t: torch.Tensor, v: torch.Tensor, sigma: Scalar, sigma_next: Scalar) -> torch.Tensor:
    r"""One Euler step along the predicted velocity: :math:`x_{\sigma'} = x_\sigma + (\sigma' - \sigma)\,\hat v`.

    Sampling goes from high to low noise, so :math:`\sigma' < \sigma` and the step
    moves against :math:`\hat v = \epsilon - x_0`, towards the data.

    :param x_t: :math:`x_\sigma`, shape ``(B, ...)``.
    :param v: :math:`\hat v`, same shape.
    :param sigma: :math:`\sigma` in ``[0, 1]``, per-sample.
    :param sigma_next: :math:`\sigma'` in ``[0, 1]``, per-sample.
    :returns: :math:`x_{\sigma'}`, shape and dtype of ``x_t``.

    >>> import torch
    >>> x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    >>> x1 = flow_interpolate(x0, eps, 1.0)  # pure noise
    >>> torch.allclose(flow_euler_step(x1, flow_target(x0, eps), 1.0, 0.0), x0, atol=1e-6)
    True
    """
    same_shape("x_t", x_t, "v", v)
    s = per_sample_floats("sigma", sigma, x_t, low=0.0, high=1.0, example=1.0)
    s_next = per_sample_floats("sigma_next", sigma_next, x_t, low=0.0, high=1.0, example=0.5)
    if isinstance(s, list) or isinstance(s_next, list):
        n = x_t.shape[0]  # one value per sample: expand the scalar one
        s, s_next = (c if isinstance(c, list) else [c] * n for c in (s, s_next))
        return add_scaled(x_t, [b - a for a, b in zip(s, s_next, strict=True)], v)
    return add_scaled(x_t, s_next - s, v)  # one pass: x_t + (sigma_next - sigma) * v
