r"""Training noise schedules: :math:`\beta_t`, :math:`\bar\alpha_t` and the SNR.

The names and defaults follow diffusers' ``DDPMScheduler`` (``beta_schedule``,
``num_train_timesteps=1000``, ``beta_start=1e-4``, ``beta_end=0.02``) so that a
reader can move between this code and diffusers without translating.

Symbols, as on the pages:

* :math:`\beta_t`: the variance of the noise added at step :math:`t`;
* :math:`\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)`: the share of the signal's
  variance that survives up to step :math:`t`;
* :math:`\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)`.
"""

from __future__ import annotations

import math

import torch

from infralens.core.args import positive_int

SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
"""The schedule names :func:`make_betas` accepts (diffusers' ``beta_schedule`` values)."""

COSINE_OFFSET = 0.008
"""The small offset :math:`s` of the cosine schedule (Nichol & Dhariwal 2021)."""

COSINE_MAX_BETA = 0.999
"""The cap on :math:`\\beta_t` of the cosine schedule, so that no step destroys all signal."""


def make_betas(
    schedule: str,
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""The per-step noise variances :math:`\beta_t` of a training schedule, shape ``(T,)``.

    * ``"linear"``: :math:`\beta_t` evenly spaced from ``beta_start`` to ``beta_end``
      (DDPM, Ho et al. 2020).
    * ``"scaled_linear"``: :math:`\sqrt{\beta_t}` evenly spaced from
      :math:`\sqrt{\text{beta\_start}}` to :math:`\sqrt{\text{beta\_end}}`, then squared
      (Stable Diffusion's schedule).
    * ``"squaredcos_cap_v2"``: :math:`\beta_t = \min\!\big(1 - f(\tfrac{t+1}{T}) / f(\tfrac{t}{T}),
      0.999\big)` with :math:`f(u) = \cos^2\!\big(\tfrac{u + s}{1 + s}\cdot\tfrac{\pi}{2}\big)`,
      :math:`s = 0.008` (Nichol & Dhariwal 2021); ``beta_start`` and ``beta_end`` are unused.

    The values are computed in float64 and returned in ``dtype``.

    :param schedule: one of :data:`SCHEDULES`.
    :param num_train_timesteps: :math:`T`, the number of training steps (at least 2).
    :param beta_start: :math:`\beta_0`, with ``0 < beta_start <= beta_end < 1``.
    :param beta_end: :math:`\beta_{T-1}`.
    :param dtype: the floating-point dtype of the result.
    :returns: :math:`\beta`, shape ``(T,)``.

    >>> import torch
    >>> betas = make_betas("linear")
    >>> betas.shape, betas.dtype
    (torch.Size([1000]), torch.float32)
    >>> torch.allclose(betas[[0, -1]], torch.tensor([1e-4, 0.02]))
    True
    >>> b = make_betas("scaled_linear", beta_start=0.00085, beta_end=0.012)
    >>> torch.allclose(b.sqrt(), torch.linspace(0.00085**0.5, 0.012**0.5, 1000))
    True
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}; got {schedule!r}")
    T = positive_int("num_train_timesteps", num_train_timesteps, example=1000)
    if T < 2:
        raise ValueError(f"num_train_timesteps must be >= 2, e.g. num_train_timesteps=1000; got {T}")
    if schedule != "squaredcos_cap_v2" and not 0 < beta_start <= beta_end < 1:
        raise ValueError(
            "beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, "
            f"e.g. beta_start=1e-4, beta_end=0.02; got beta_start={beta_start}, beta_end={beta_end}"
        )
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, e.g. torch.float32; got {dtype}")

    if schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)  # (T,)
    elif schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2  # (T,)
    else:
        # f(u) = cos^2((u + s) / (1 + s) * pi / 2), evaluated at u = t/T and (t+1)/T
        u = torch.arange(T + 1, dtype=torch.float64) / T  # (T+1,)
        f = torch.cos((u + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=COSINE_MAX_BETA)  # (T,)
    return betas.to(dtype)


def _check_betas(betas: torch.Tensor) -> None:
    if not isinstance(betas, torch.Tensor) or betas.ndim != 1 or not betas.is_floating_point():
        shape = tuple(betas.shape) if isinstance(betas, torch.Tensor) else type(betas).__name__
        raise ValueError(
            f"betas must be a 1-D floating-point tensor of shape (T,), e.g. make_betas('linear'); got {shape}"
        )
    if len(betas) < 2:
        raise ValueError(f"betas must hold at least 2 steps, e.g. make_betas('linear'); got {len(betas)}")
    if torch.isnan(betas).any() or (betas < 0).any() or (betas > 1).any():
        raise ValueError("betas must lie in [0, 1], e.g. make_betas('linear') lies in [1e-4, 0.02]")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    r""":math:`\bar\alpha_t = \prod_{s=0}^{t} (1 - \beta_s)`, shape ``(T,)``, in the dtype of ``betas``.

    The product runs in float64, so a float32 schedule loses nothing to rounding
    over a thousand factors.

    :param betas: :math:`\beta`, shape ``(T,)``, values in ``[0, 1]``.
    :returns: :math:`\bar\alpha`, shape ``(T,)``, non-increasing, in ``[0, 1]``.

    >>> import torch
    >>> betas = torch.tensor([0.1, 0.2, 0.5])
    >>> torch.allclose(alphas_cumprod(betas), torch.tensor([0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.5]))
    True
    """
    _check_betas(betas)
    return torch.cumprod(1 - betas.double(), dim=0).to(betas.dtype)  # (T,)


def snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    r"""Signal-to-noise ratio :math:`\mathrm{SNR} = \bar\alpha / (1 - \bar\alpha)`, elementwise.

    :math:`\bar\alpha = 1` gives ``inf`` and :math:`\bar\alpha = 0` gives ``0``.

    :param alpha_bar: :math:`\bar\alpha`, any shape, values in ``[0, 1]``.
    :returns: the SNR, same shape and dtype.

    >>> import torch
    >>> snr(torch.tensor([0.5, 0.75, 0.0]))
    tensor([1., 3., 0.])
    """
    return alpha_bar / (1 - alpha_bar)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    r"""Rescale a schedule so that its last step has zero SNR (Lin et al. 2023, Algorithm 1).

    With :math:`r_t = \sqrt{\bar\alpha_t}`, the rescaled
    :math:`r'_t = (r_t - r_{T-1}) \cdot \dfrac{r_0}{r_0 - r_{T-1}}` keeps :math:`r'_0 = r_0`
    and makes :math:`r'_{T-1} = 0`; the new :math:`\beta'_t = 1 - \bar\alpha'_t / \bar\alpha'_{t-1}`
    (and :math:`\beta'_0 = 1 - \bar\alpha'_0`). The last :math:`\beta'` is exactly 1,
    so the last :math:`\bar\alpha'` is exactly 0: the model is trained on pure noise
    at :math:`t = T - 1`, as it meets it at the start of sampling.

    :param betas: :math:`\beta`, shape ``(T,)``.
    :returns: :math:`\beta'`, shape ``(T,)``, in the dtype of ``betas``.

    >>> import torch
    >>> new = rescale_zero_terminal_snr(make_betas("scaled_linear", beta_start=0.00085, beta_end=0.012))
    >>> ab = alphas_cumprod(new)
    >>> ab[-1].item(), new[-1].item()
    (0.0, 1.0)
    """
    _check_betas(betas)
    r = alphas_cumprod(betas.double()).sqrt()  # (T,)
    r0, rT = r[0].clone(), r[-1].clone()
    if r0 == rT:
        raise ValueError("betas must add noise somewhere after step 0 (alpha_bar must decrease) to be rescaled")
    r = (r - rT) * (r0 / (r0 - rT))  # r'_0 = r_0, r'_{T-1} = 0
    ab = r**2  # (T,)
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])  # alpha'_t = ab'_t / ab'_{t-1}
    return (1 - alphas).to(betas.dtype)
