r"""The forward (noising) process and the training targets built from it.

.. math:: x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon,
   \qquad \epsilon \sim \mathcal N(0, I)

:math:`\bar\alpha_t` is per-sample: a number, a 0-d tensor or a ``(B,)`` tensor
that broadcasts over the other axes of :math:`x_0`. The coefficients
:math:`\sqrt{\bar\alpha_t}` and :math:`\sqrt{1-\bar\alpha_t}` are computed in
double precision, the mix in float32 or better whatever the dtype of :math:`x_0`,
and the result is rounded once to the dtype of the first tensor argument (a
``bfloat16`` latent never meets a ``bfloat16`` coefficient). Each formula is one
line under its docstring formula, two kernels on float32 tensors (a multiply,
then ``torch.addcmul``).
"""

from __future__ import annotations

import torch

from infralens.core.args import Scalar, compute_dtype, per_sample, same_shape


def _coefficients(alpha_bar_t: Scalar, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """:math:`(\\sqrt{\\bar\\alpha_t}, \\sqrt{1-\\bar\\alpha_t})`, from double precision, as tensors that broadcast
    over ``like`` (``()`` or ``(B, 1, ..., 1)``), and the dtype the mix is computed in."""
    shape = (like.shape[0],) + (1,) * (like.ndim - 1) if like.ndim else ()
    stand_in = torch.empty(shape, dtype=torch.float64, device=like.device)  # validation and exact sqrt
    ab = per_sample("alpha_bar_t", alpha_bar_t, stand_in, low=0.0, high=1.0, example=0.5)
    dtype = compute_dtype(like.dtype)
    return ab.sqrt().to(dtype), (1 - ab).sqrt().to(dtype), dtype


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alpha_bar_t: Scalar) -> torch.Tensor:
    r"""Noise a clean sample: :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`.

    This is what diffusers' ``DDPMScheduler.add_noise(x0, noise, timesteps)`` computes
    once it has looked up ``alphas_cumprod[timesteps]``.

    :param x0: :math:`x_0`, the clean sample (a latent), shape ``(B, ...)``.
    :param noise: :math:`\epsilon`, same shape as ``x0``.
    :param alpha_bar_t: :math:`\bar\alpha_t` in ``[0, 1]``, per-sample.
    :returns: :math:`x_t`, shape and dtype of ``x0``.

    >>> import torch
    >>> x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    >>> ab = torch.tensor([0.9, 0.1])
    >>> x_t = add_noise(x0, eps, ab)
    >>> x_t.shape
    torch.Size([2, 4, 8, 8])
    >>> torch.allclose(x_t[1], 0.1**0.5 * x0[1] + 0.9**0.5 * eps[1])
    True
    """
    same_shape("x0", x0, "noise", noise)
    a, b, dtype = _coefficients(alpha_bar_t, x0)
    return torch.addcmul(a * x0.to(dtype), noise.to(dtype), b).to(x0.dtype)  # sqrt(ab) x0 + sqrt(1 - ab) eps


def v_target(x0: torch.Tensor, noise: torch.Tensor, alpha_bar_t: Scalar) -> torch.Tensor:
    r"""The v-prediction target :math:`v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0`.

    Diffusers calls this ``get_velocity`` (Salimans & Ho 2022).

    :param x0: :math:`x_0`, shape ``(B, ...)``.
    :param noise: :math:`\epsilon`, same shape.
    :param alpha_bar_t: :math:`\bar\alpha_t` in ``[0, 1]``, per-sample.
    :returns: :math:`v`, shape and dtype of ``x0``.

    >>> import torch
    >>> x0, eps = torch.randn(3, 4), torch.randn(3, 4)
    >>> torch.allclose(v_target(x0, eps, 1.0), eps), torch.allclose(v_target(x0, eps, 0.0), -x0)
    (True, True)
    """
    same_shape("x0", x0, "noise", noise)
    a, b, dtype = _coefficients(alpha_bar_t, x0)
    return torch.addcmul(a * noise.to(dtype), x0.to(dtype), -b).to(x0.dtype)  # sqrt(ab) eps - sqrt(1 - ab) x0


def predict_x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: Scalar) -> torch.Tensor:
    r"""Recover the clean sample from a noise prediction:
    :math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon) / \sqrt{\bar\alpha_t}`.

    It divides by :math:`\sqrt{\bar\alpha_t}`, so it needs :math:`\bar\alpha_t > 0`:
    at zero terminal SNR the last step has :math:`\bar\alpha_t = 0` and an
    epsilon prediction carries no information about :math:`x_0` (use v-prediction).

    :param x_t: :math:`x_t`, shape ``(B, ...)``.
    :param eps: :math:`\hat\epsilon`, the predicted noise, same shape.
    :param alpha_bar_t: :math:`\bar\alpha_t` in ``(0, 1]``, per-sample.
    :returns: :math:`\hat x_0`, shape and dtype of ``x_t``.

    >>> import torch
    >>> x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    >>> x_t = add_noise(x0, eps, 0.3)
    >>> torch.allclose(predict_x0_from_eps(x_t, eps, 0.3), x0, atol=1e-5)
    True
    """
    same_shape("x_t", x_t, "eps", eps)
    a, b, dtype = _coefficients(alpha_bar_t, x_t)
    if (a == 0).any():
        raise ValueError(
            "alpha_bar_t must be > 0 to recover x0 from eps (it divides by sqrt(alpha_bar_t)), "
            "e.g. alpha_bar_t=0.5; at alpha_bar_t = 0 use predict_x0_from_v"
        )
    return ((x_t.to(dtype) - b * eps.to(dtype)) / a).to(x_t.dtype)  # (x_t - sqrt(1 - ab) eps) / sqrt(ab)


def predict_x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar_t: Scalar) -> torch.Tensor:
    r"""Recover the clean sample from a v prediction:
    :math:`\hat x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,\hat v`.

    It needs no division, so it works at :math:`\bar\alpha_t = 0` too.

    :param x_t: :math:`x_t`, shape ``(B, ...)``.
    :param v: :math:`\hat v`, the predicted velocity, same shape.
    :param alpha_bar_t: :math:`\bar\alpha_t` in ``[0, 1]``, per-sample.
    :returns: :math:`\hat x_0`, shape and dtype of ``x_t``.

    >>> import torch
    >>> x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    >>> x_t, v = add_noise(x0, eps, 0.0), v_target(x0, eps, 0.0)
    >>> torch.allclose(predict_x0_from_v(x_t, v, 0.0), x0)
    True
    """
    same_shape("x_t", x_t, "v", v)
    a, b, dtype = _coefficients(alpha_bar_t, x_t)
    return torch.addcmul(a * x_t.to(dtype), v.to(dtype), -b).to(x_t.dtype)  # sqrt(ab) x_t - sqrt(1 - ab) v
