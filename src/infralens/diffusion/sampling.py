r"""One reverse (denoising) update: a model prediction turned into a less noisy latent.

The denoiser reads the noisy latent :math:`x_t` and outputs one tensor of the
latent's shape. What that tensor *means* is fixed by how the model was trained
(``prediction_type`` in diffusers): the noise :math:`\hat\epsilon`
(``"epsilon"``), the velocity :math:`\hat v` (``"v_prediction"``) or the clean
latent :math:`\hat x_0` (``"sample"``). The scheduler turns it into
:math:`\hat x_0`, then moves :math:`x_t` to the previous (less noisy) timestep.

A step goes from :math:`\bar\alpha_t` to :math:`\bar\alpha_{\text{prev}} \ge \bar\alpha_t`,
which need not be neighbours: with 50 inference steps over 1000 training steps
they are 20 apart. As in diffusers' ``DDPMScheduler.step``, the one-step
quantities are then

.. math:: \alpha_t = \bar\alpha_t / \bar\alpha_{\text{prev}}, \qquad \beta_t = 1 - \alpha_t.

All :math:`\bar\alpha` arguments are per-sample (a number, a 0-d tensor or a
``(B,)`` tensor). Coefficients are computed in double precision and applied by
PyTorch in float32 or better; results have the dtype of ``x_t``.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch

from infralens.core.args import Scalar, compute_dtype, per_sample_floats, same_shape
from infralens.core.mix import Coef, add_scaled, axpby

from .forward import predict_x0_from_eps, predict_x0_from_v

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
r"""What a DDPM-family denoiser's output can mean: the ``prediction_type`` values of diffusers' ``DDPMScheduler``
and ``DDIMScheduler``. UniPC and DPM-Solver also take ``"flow_prediction"`` (:math:`\epsilon - x_0`, on the flow
path of :func:`~infralens.diffusion.flow_interpolate`, where :math:`\hat x_0 = x_\sigma - \sigma\,\hat u`)."""


class StepOutput(NamedTuple):
    """The result of one reverse step, named as diffusers names it (``DDPMSchedulerOutput``)."""

    prev_sample: torch.Tensor
    """:math:`x_{\\text{prev}}`, the latent at the previous (less noisy) timestep, shape of ``x_t``."""
    pred_original_sample: torch.Tensor
    """:math:`\\hat x_0`, the clean latent the step aimed at (after clipping, if any)."""


def _check_prediction_type(prediction_type: str) -> None:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"prediction_type must be one of {', '.join(map(repr, PREDICTION_TYPES))}, "
            f"e.g. prediction_type='epsilon'; got {prediction_type!r}"
        )


def _levels(alpha_bar_t: Scalar, alpha_bar_prev: Scalar, like: torch.Tensor) -> tuple[list[float], list[float], bool]:
    """Validated :math:`(\\bar\\alpha_t, \\bar\\alpha_{prev})` as Python floats, one pair per sample.

    Returns the two lists and whether both were single values (then each list has one item).
    """
    ab = per_sample_floats("alpha_bar_t", alpha_bar_t, like, low=0.0, high=1.0, example=0.5)
    prev = per_sample_floats("alpha_bar_prev", alpha_bar_prev, like, low=0.0, high=1.0, example=0.6)
    scalar = not isinstance(ab, list) and not isinstance(prev, list)
    n = 1 if scalar else like.shape[0]
    ab_l = ab if isinstance(ab, list) else [ab] * n
    prev_l = prev if isinstance(prev, list) else [prev] * n
    for a, p in zip(ab_l, prev_l, strict=True):
        if a == 1.0:
            raise ValueError(
                f"alpha_bar_t must be < 1 for a reverse step (x_t must hold some noise), e.g. alpha_bar_t=0.5; got {a}"
            )
        if p == 0.0:
            raise ValueError(
                "alpha_bar_prev must be > 0 (the step must move towards the data), "
                f"e.g. alpha_bar_prev=0.6 or 1.0 for the last step; got {p}"
            )
        if p < a:
            raise ValueError(
                "alpha_bar_prev must be >= alpha_bar_t (the previous timestep is less noisy), "
                f"e.g. alpha_bar_t=0.5, alpha_bar_prev=0.6; got alpha_bar_t={a}, alpha_bar_prev={p}"
            )
    return ab_l, prev_l, scalar


def _coef(values: list[float], scalar: bool) -> Coef:
    return values[0] if scalar else values


def _host(values: list[float], scalar: bool) -> float | torch.Tensor:
    """Validated per-sample values as a float or a float64 CPU tensor (reading them again needs no device sync)."""
    return values[0] if scalar else torch.tensor(values, dtype=torch.float64)


def _broadcastable(values: list[float], scalar: bool, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values as a tensor of shape ``()`` or ``(B, 1, ..., 1)``, in the compute dtype of ``like``."""
    t = torch.tensor(values, dtype=compute_dtype(like.dtype), device=like.device)  # (B,) or (1,)
    return t[0] if scalar else t.reshape((-1,) + (1,) * (like.ndim - 1))  # () or (B, 1, ..., 1)


def _clip(x0: torch.Tensor, clip_sample: float | None) -> torch.Tensor:
    if clip_sample is None:
        return x0
    if isinstance(clip_sample, bool) or not isinstance(clip_sample, numbers.Real) or not clip_sample > 0:
        raise ValueError(
            f"clip_sample must be None (no clipping) or a number > 0, e.g. clip_sample=1.0; got {clip_sample!r}"
        )
    return x0.clamp(-clip_sample, clip_sample)


def _noise_term(prev: torch.Tensor, std: list[float], scalar: bool, noise: torch.Tensor | None) -> torch.Tensor:
    """``prev + std * noise``; ``noise`` is required when some ``std`` is > 0."""
    if noise is None:
        if any(s > 0 for s in std):
            raise ValueError(
                "noise must be given when the step adds noise (its variance is > 0), e.g. noise=torch.randn_like(x_t)"
            )
        return prev
    same_shape("x_t", prev, "noise", noise)
    return add_scaled(prev, _coef(std, scalar), noise)  # one pass: mean + std * z


def predict_x0(
    x_t: torch.Tensor, model_output: torch.Tensor, alpha_bar_t: Scalar, prediction_type: str = "epsilon"
) -> torch.Tensor:
    r"""The clean latent :math:`\hat x_0` implied by a model output, read as ``prediction_type`` says.

    * ``"epsilon"``: :math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon) / \sqrt{\bar\alpha_t}`
      (needs :math:`\bar\alpha_t > 0`);
    * ``"v_prediction"``: :math:`\hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,\hat v`;
    * ``"sample"``: :math:`\hat x_0` is the output itself (returned as is).

    :param x_t: :math:`x_t`, the denoiser's input, shape ``(B, ...)``.
    :param model_output: the denoiser's output, same shape.
    :param alpha_bar_t: :math:`\bar\alpha_t` in ``[0, 1]``, per-sample.
    :param prediction_type: one of :data:`PREDICTION_TYPES`.
    :returns: :math:`\hat x_0`, shape and dtype of ``x_t``.

    >>> import torch
    >>> from infralens.diffusion import add_noise, v_target
    >>> x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    >>> x_t, v = add_noise(x0, eps, 0.3), v_target(x0, eps, 0.3)
    >>> torch.allclose(predict_x0(x_t, v, 0.3, "v_prediction"), x0, atol=1e-5)
    True
    """
    _check_prediction_type(prediction_type)
    same_shape("x_t", x_t, "model_output", model_output)
    if prediction_type == "epsilon":
        return predict_x0_from_eps(x_t, model_output, alpha_bar_t)
    if prediction_type == "v_prediction":
        return predict_x0_from_v(x_t, model_output, alpha_bar_t)
    per_sample_floats("alpha_bar_t", alpha_bar_t, x_t, low=0.0, high=1.0, example=0.5)  # same checks as the others
    return model_output


def predict_epsilon(
    x_t: torch.Tensor, model_output: torch.Tensor, alpha_bar_t: Scalar, prediction_type: str = "epsilon"
) -> torch.Tensor:
    r"""The noise :math:`\hat\epsilon` implied by a model output, read as ``prediction_type`` says.

    * ``"epsilon"``: the output itself (returned as is);
    * ``"v_prediction"``: :math:`\hat\epsilon = \sqrt{\bar\alpha_t}\,\hat v + \sqrt{1-\bar\alpha_t}\,x_t`;
    * ``"sample"``: :math:`\hat\epsilon = (x_t - \sqrt{\bar\alpha_t}\,\hat x_0) / \sqrt{1-\bar\alpha_t}`
      (needs :math:`\bar\alpha_t < 1`).

    :param x_t: :math:`x_t`, shape ``(B, ...)``.
    :param model_output: the denoiser's output, same shape.
    :param alpha_bar_t: :math:`\bar\alpha_t` in ``[0, 1]``, per-sample.
    :param prediction_type: one of :data:`PREDICTION_TYPES`.
    :returns: :math:`\hat\epsilon`, shape and dtype of ``x_t``.

    >>> import torch
    >>> from infralens.diffusion import add_noise
    >>> x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    >>> x_t = add_noise(x0, eps, 0.3)
    >>> torch.allclose(predict_epsilon(x_t, x0, 0.3, "sample"), eps, atol=1e-5)
    True
    """
    _check_prediction_type(prediction_type)
    same_shape("x_t", x_t, "model_output", model_output)
    ab = per_sample_floats("alpha_bar_t", alpha_bar_t, x_t, low=0.0, high=1.0, example=0.5)
    abs_ = ab if isinstance(ab, list) else [ab]
    scalar = not isinstance(ab, list)
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "v_prediction":
        c_v = _coef([math.sqrt(a) for a in abs_], scalar)  # sqrt(ab)
        c_xt = _coef([math.sqrt(1 - a) for a in abs_], scalar)  # sqrt(1 - ab)
        return axpby(c_v, model_output, c_xt, x_t)  # eps = sqrt(ab) * v + sqrt(1 - ab) * x_t
    if 1.0 in abs_:
        raise ValueError(
            "alpha_bar_t must be < 1 to recover eps from an x0 prediction (it divides by "
            "sqrt(1 - alpha_bar_t)), e.g. alpha_bar_t=0.5"
        )
    # eps = x_t / sqrt(1 - ab) - (sqrt(ab) / sqrt(1 - ab)) * x0
    inv = [1 / math.sqrt(1 - a) for a in abs_]
    neg = [-math.sqrt(a) / math.sqrt(1 - a) for a in abs_]
    return axpby(_coef(inv, scalar), x_t, _coef(neg, scalar), model_output)


def ddpm_posterior(
    x_t: torch.Tensor, x0: torch.Tensor, alpha_bar_t: Scalar, alpha_bar_prev: Scalar
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and variance of the DDPM posterior :math:`q(x_{\text{prev}} \mid x_t, x_0)` (Ho et al. 2020, eq. 6-7).

    .. math:: \tilde\mu = \frac{\sqrt{\bar\alpha_{\text{prev}}}\,\beta_t}{1-\bar\alpha_t}\,x_0
       + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{\text{prev}})}{1-\bar\alpha_t}\,x_t,
       \qquad \tilde\beta = \frac{1-\bar\alpha_{\text{prev}}}{1-\bar\alpha_t}\,\beta_t

    with :math:`\alpha_t = \bar\alpha_t / \bar\alpha_{\text{prev}}` and :math:`\beta_t = 1 - \alpha_t`
    (the step may skip training timesteps, as in diffusers' ``DDPMScheduler.step``).

    :param x_t: :math:`x_t`, shape ``(B, ...)``.
    :param x0: :math:`x_0` (in sampling, the prediction :math:`\hat x_0`), same shape.
    :param alpha_bar_t: :math:`\bar\alpha_t` in ``[0, 1)``, per-sample.
    :param alpha_bar_prev: :math:`\bar\alpha_{\text{prev}}` in ``(0, 1]``, at least ``alpha_bar_t``;
        1 for the last step.
    :returns: ``(mean, variance)``: :math:`\tilde\mu` with the shape and dtype of ``x_t``, and
        :math:`\tilde\beta` of shape ``()`` or ``(B, 1, ..., 1)`` (it broadcasts over ``x_t``),
        in float32 or better.

    >>> import torch
    >>> x_t, x0 = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    >>> mean, var = ddpm_posterior(x_t, x0, 0.5, 1.0)  # the last step: to alpha_bar = 1
    >>> torch.equal(mean, x0), var.item()
    (True, 0.0)
    """
    same_shape("x_t", x_t, "x0", x0)
    abs_, prevs, scalar = _levels(alpha_bar_t, alpha_bar_prev, x_t)
    c_x0, c_xt, var = [], [], []
    for ab, prev in zip(abs_, prevs, strict=True):
        alpha = ab / prev  # alpha_t = ab_t / ab_prev
        beta = 1 - alpha  # beta_t
        c_x0.append(math.sqrt(prev) * beta / (1 - ab))  # sqrt(ab_prev) beta_t / (1 - ab_t)
        c_xt.append(math.sqrt(alpha) * (1 - prev) / (1 - ab))  # sqrt(alpha_t) (1 - ab_prev) / (1 - ab_t)
        var.append((1 - prev) / (1 - ab) * beta)  # (1 - ab_prev) / (1 - ab_t) beta_t
    mean = axpby(_coef(c_x0, scalar), x0, _coef(c_xt, scalar), x_t)  # (B, ...)
    return mean, _broadcastable(var, scalar, x_t)


def ddpm_step(
    x_t: torch.Tensor,
    model_output: torch.Tensor,
    alpha_bar_t: Scalar,
    alpha_bar_prev: Scalar,
    *,
    prediction_type: str = "epsilon",
    noise: torch.Tensor | None = None,
    clip_sample: float | None = None,
) -> StepOutput:
    r"""One DDPM reverse step: :math:`x_{\text{prev}} = \tilde\mu(x_t, \hat x_0) + \sqrt{\tilde\beta}\,z`.

    The model output becomes :math:`\hat x_0` (:func:`predict_x0`), optionally
    clipped to ``[-clip_sample, clip_sample]``, and the step samples the
    posterior of :func:`ddpm_posterior` around it with the given noise
    :math:`z \sim \mathcal N(0, I)`. This is diffusers' ``DDPMScheduler.step``
    with ``variance_type="fixed_small"``; diffusers clips at 1 by default
    (``clip_sample=True``), this function only when asked.

    :param x_t: :math:`x_t`, shape ``(B, ...)``.
    :param model_output: the denoiser's output at :math:`x_t`, same shape.
    :param alpha_bar_t: :math:`\bar\alpha_t` in ``[0, 1)``, per-sample.
    :param alpha_bar_prev: :math:`\bar\alpha_{\text{prev}}` in ``(0, 1]``, at least ``alpha_bar_t``.
    :param prediction_type: one of :data:`PREDICTION_TYPES`, as the model was trained.
    :param noise: :math:`z`, same shape as ``x_t``; required unless the variance is 0 (the last step).
    :param clip_sample: clip :math:`\hat x_0` to this magnitude, or ``None`` for no clipping.
    :returns: :class:`StepOutput` ``(prev_sample, pred_original_sample)``.

    >>> import torch
    >>> from infralens.diffusion import add_noise
    >>> x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    >>> out = ddpm_step(add_noise(x0, eps, 0.5), eps, 0.5, 1.0)  # last step: no noise
    >>> torch.allclose(out.prev_sample, x0, atol=1e-6)
    True
    """
    abs_, prevs, scalar = _levels(alpha_bar_t, alpha_bar_prev, x_t)  # validated once, as Python floats
    ab, prev = _host(abs_, scalar), _host(prevs, scalar)  # no tensor left to read back from the device below
    x0_hat = _clip(predict_x0(x_t, model_output, ab, prediction_type), clip_sample)
    mean, _ = ddpm_posterior(x_t, x0_hat, ab, prev)
    std = [math.sqrt((1 - p) / (1 - a) * (1 - a / p)) for a, p in zip(abs_, prevs, strict=True)]
    return StepOutput(_noise_term(mean, std, scalar, noise), x0_hat)


def ddim_step(
    x_t: torch.Tensor,
    model_output: torch.Tensor,
    alpha_bar_t: Scalar,
    alpha_bar_prev: Scalar,
    *,
    prediction_type: str = "epsilon",
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_sample: float | None = None,
) -> StepOutput:
    r"""One DDIM step (Song et al. 2021, eq. 12): re-noise :math:`\hat x_0` to the previous level with its own noise.

    .. math:: x_{\text{prev}} = \sqrt{\bar\alpha_{\text{prev}}}\,\hat x_0
       + \sqrt{1 - \bar\alpha_{\text{prev}} - \sigma^2}\,\hat\epsilon + \sigma z, \qquad
       \sigma = \eta\,\sqrt{\tilde\beta}

    With :math:`\eta = 0` (the default) the step is deterministic: the same
    :math:`\hat\epsilon` that was removed is put back at the lower noise level.
    With :math:`\eta = 1` it is the DDPM step. :math:`\hat\epsilon` comes from
    the unclipped prediction (diffusers' default ``use_clipped_model_output=False``).

    :param x_t: :math:`x_t`, shape ``(B, ...)``.
    :param model_output: the denoiser's output at :math:`x_t`, same shape.
    :param alpha_bar_t: :math:`\bar\alpha_t` in ``[0, 1)``, per-sample.
    :param alpha_bar_prev: :math:`\bar\alpha_{\text{prev}}` in ``(0, 1]``, at least ``alpha_bar_t``.
    :param prediction_type: one of :data:`PREDICTION_TYPES`, as the model was trained.
    :param eta: :math:`\eta` in ``[0, 1]``: 0 is DDIM, 1 is DDPM.
    :param noise: :math:`z`, same shape as ``x_t``; required when :math:`\sigma > 0`.
    :param clip_sample: clip :math:`\hat x_0` to this magnitude, or ``None`` for no clipping.
    :returns: :class:`StepOutput` ``(prev_sample, pred_original_sample)``.

    >>> import torch
    >>> from infralens.diffusion import add_noise
    >>> x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    >>> out = ddim_step(add_noise(x0, eps, 0.2), eps, 0.2, 0.6)  # a perfect eps
    >>> torch.allclose(out.prev_sample, add_noise(x0, eps, 0.6), atol=1e-5)
    True
    """
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0 <= eta <= 1:
        raise ValueError(f"eta must be a number in [0, 1], e.g. eta=0.0 (DDIM) or eta=1.0 (DDPM); got {eta!r}")
    abs_, prevs, scalar = _levels(alpha_bar_t, alpha_bar_prev, x_t)  # validated once, as Python floats
    ab = _host(abs_, scalar)  # no tensor left to read back from the device below
    x0_hat = predict_x0(x_t, model_output, ab, prediction_type)
    eps_hat = predict_epsilon(x_t, model_output, ab, prediction_type)
    x0_hat = _clip(x0_hat, clip_sample)
    sigma = [eta * math.sqrt((1 - p) / (1 - a) * (1 - a / p)) for a, p in zip(abs_, prevs, strict=True)]
    c_x0 = [math.sqrt(p) for p in prevs]  # sqrt(ab_prev)
    c_eps = [math.sqrt(max(1 - p - s * s, 0.0)) for p, s in zip(prevs, sigma, strict=True)]  # rounding only
    prev = axpby(_coef(c_x0, scalar), x0_hat, _coef(c_eps, scalar), eps_hat)  # (B, ...)
    return StepOutput(_noise_term(prev, sigma, scalar, noise), x0_hat)
