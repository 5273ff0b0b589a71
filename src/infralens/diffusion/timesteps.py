r"""The inference time axis: which training timesteps a sampler visits, and at what noise level.

Training draws timesteps from all :math:`T` of the schedule; a sampler with
:math:`N \ll T` steps visits only :math:`N` of them, chosen by a *timestep
spacing* (the names of Lin et al. 2023, Table 2, which diffusers uses as
``timestep_spacing``). With :math:`r = \lfloor T / N \rfloor`:

* ``"leading"``: :math:`t_k = k\,r + \text{steps\_offset}`, :math:`k = N-1, \dots, 0`;
* ``"trailing"``: :math:`t_k = \operatorname{round}(T - k\,T/N) - 1`, :math:`k = 0, \dots, N-1`;
* ``"linspace"``: :math:`N` evenly spaced points from :math:`T - 1` down to 0, rounded.

Rounding is half to even, as NumPy's. Two samplers work in other coordinates:
Euler-type schedulers step in :math:`\sigma = \sqrt{(1-\bar\alpha)/\bar\alpha}` and
rescale the model input (:func:`scale_model_input`); flow-matching schedulers
step in :math:`\sigma \in [0, 1]` directly (:func:`flow_match_sigmas`).
"""

from __future__ import annotations

import math
import numbers

import torch

from infralens.core.args import Scalar, per_sample_floats, positive_int
from infralens.core.mix import Coef

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
"""The spacings :func:`inference_timesteps` accepts (diffusers' ``timestep_spacing`` values)."""


def inference_timesteps(
    num_inference_steps: int,
    *,
    num_train_timesteps: int = 1000,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
    discrete: bool = True,
) -> torch.Tensor:
    r"""The training timesteps a sampler visits, noisiest first, shape ``(N,)``.

    The values diffusers' ``set_timesteps`` builds in ``DDPMScheduler`` and
    ``DDIMScheduler`` (``discrete=True``, int64) or in ``EulerDiscreteScheduler``
    (``discrete=False``, float32: there the ``"linspace"`` grid keeps its
    fractions). ``steps_offset`` shifts the ``"leading"`` grid only, as in
    diffusers. Exactly :math:`N` values are returned for every spacing (see the
    Lab 03 page for where diffusers differs).

    :param num_inference_steps: :math:`N`, from 1 to ``num_train_timesteps``.
    :param num_train_timesteps: :math:`T`, the length of the training schedule.
    :param timestep_spacing: one of :data:`TIMESTEP_SPACINGS`.
    :param steps_offset: added to every ``"leading"`` timestep, ``>= 0``.
    :param discrete: round the ``"linspace"`` grid to integers (DDPM, DDIM) or not (Euler).
    :returns: the timesteps, shape ``(N,)``, descending.

    >>> inference_timesteps(5)
    tensor([800, 600, 400, 200,   0])
    >>> inference_timesteps(5, timestep_spacing="trailing")
    tensor([999, 799, 599, 399, 199])
    >>> inference_timesteps(5, timestep_spacing="linspace")
    tensor([999, 749, 500, 250,   0])
    """
    T = positive_int("num_train_timesteps", num_train_timesteps, example=1000)
    N = positive_int("num_inference_steps", num_inference_steps, example=50)
    if N > T:
        raise ValueError(
            f"num_inference_steps must be <= num_train_timesteps = {T} (a sampler can only visit trained "
            f"timesteps), e.g. num_inference_steps=50; got {N}"
        )
    if timestep_spacing not in TIMESTEP_SPACINGS:
        raise ValueError(
            f"timestep_spacing must be one of {', '.join(map(repr, TIMESTEP_SPACINGS))}, "
            f"e.g. timestep_spacing='leading'; got {timestep_spacing!r}"
        )
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, numbers.Integral) or steps_offset < 0:
        raise ValueError(f"steps_offset must be a whole number >= 0, e.g. steps_offset=1; got {steps_offset!r}")
    if not isinstance(discrete, bool):
        raise ValueError(f"discrete must be True or False, e.g. discrete=True; got {discrete!r}")
    k = torch.arange(N, dtype=torch.float64)  # (N,)
    if timestep_spacing == "leading":
        ratio = T // N
        if (N - 1) * ratio + steps_offset > T - 1:
            raise ValueError(
                f"steps_offset must keep the first timestep below num_train_timesteps = {T}: "
                f"{(N - 1) * ratio} + steps_offset must be <= {T - 1}, e.g. steps_offset="
                f"{min(1, T - 1 - (N - 1) * ratio)}; got {steps_offset}"
            )
        t = (k * ratio).flip(0) + steps_offset  # (N,) k * r, noisiest first
    elif timestep_spacing == "trailing":
        # T + k * delta with NumPy's arange step, delta = (T - T / N) - T (it differs from -T / N in
        # the last bit, which decides the rounding of values like 937.5)
        delta = (T - T / N) - T
        t = torch.round(T + k * delta) - 1  # (N,) from T - 1 down; ends one stride above 0
    else:
        # NumPy's linspace: k * ((T - 1) / (N - 1)), the end point exact; N = 1 gives [0]
        t = k * ((T - 1) / (N - 1)) if N > 1 else k  # (N,)
        if N > 1:
            t[-1] = T - 1
        t = t.flip(0)
        if discrete:
            t = torch.round(t)
    return t.to(torch.int64) if discrete else t.to(torch.float32)


def euler_sigmas(alpha_bar: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    r"""Noise levels of an Euler-type sampler: :math:`\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}`, then 0.

    In these coordinates the latent is :math:`x = x_0 + \sigma\,\epsilon` (its
    variance grows with :math:`\sigma`) instead of
    :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`. Fractional
    timesteps (the ``"linspace"`` grid of ``EulerDiscreteScheduler``) are
    interpolated linearly between neighbouring training timesteps, as diffusers
    does. A final :math:`\sigma = 0` is appended: the loop's destination.

    :param alpha_bar: :math:`\bar\alpha`, the training schedule, shape ``(T,)``, values in ``(0, 1]``.
    :param timesteps: the timesteps visited, shape ``(N,)``, in ``[0, T - 1]``.
    :returns: :math:`\sigma`, shape ``(N + 1,)``, float32.

    >>> import torch
    >>> euler_sigmas(torch.tensor([0.8, 0.5, 0.2]), torch.tensor([2, 1]))
    tensor([2., 1., 0.])
    """
    if not isinstance(alpha_bar, torch.Tensor) or alpha_bar.ndim != 1 or not alpha_bar.is_floating_point():
        raise ValueError(
            "alpha_bar must be a 1-D floating-point tensor (T,), e.g. alphas_cumprod(make_betas('linear'))"
        )
    if (alpha_bar <= 0).any() or (alpha_bar > 1).any():
        raise ValueError(
            "alpha_bar must lie in (0, 1]: sigma = sqrt((1 - alpha_bar) / alpha_bar) is infinite at 0, "
            "e.g. alphas_cumprod(make_betas('linear'))"
        )
    if not isinstance(timesteps, torch.Tensor) or timesteps.ndim != 1:
        raise ValueError("timesteps must be a 1-D tensor (N,), e.g. inference_timesteps(50, discrete=False)")
    T = len(alpha_bar)
    ts = timesteps.double()
    if (ts < 0).any() or (ts > T - 1).any():
        raise ValueError(
            f"timesteps must lie in [0, {T - 1}] (the training schedule has {T} steps), "
            f"e.g. inference_timesteps(50, num_train_timesteps={T}); got {timesteps.min().item()} to "
            f"{timesteps.max().item()}"
        )
    table = ((1 - alpha_bar) / alpha_bar).sqrt().double()  # (T,) sigma at every training timestep
    lo = ts.floor().long().clamp(max=T - 2) if T > 1 else ts.long()  # (N,) left neighbour
    w = ts - lo  # (N,) in [0, 1]
    hi = (lo + 1).clamp(max=T - 1)
    sigma = torch.lerp(table[lo], table[hi], w)  # (N,) linear interpolation
    return torch.cat([sigma, sigma.new_zeros(1)]).float()  # (N + 1,)


def scale_model_input(sample: torch.Tensor, sigma: Scalar) -> torch.Tensor:
    r"""The denoiser's input in an Euler-type loop: :math:`x / \sqrt{\sigma^2 + 1}`.

    The loop carries :math:`x = x_0 + \sigma\,\epsilon`, but the model was trained
    on :math:`x_t`. Since :math:`\sqrt{\sigma^2 + 1} = 1/\sqrt{\bar\alpha_t}`, dividing
    gives back exactly :math:`\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`.
    (``EulerDiscreteScheduler.scale_model_input``; in DDPM and DDIM it is the identity.)

    :param sample: :math:`x`, shape ``(B, ...)``.
    :param sigma: :math:`\sigma \ge 0`, per-sample.
    :returns: the scaled sample, shape and dtype of ``sample``.

    >>> import torch
    >>> x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    >>> ab = 0.2
    >>> sigma = ((1 - ab) / ab) ** 0.5
    >>> x_t = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
    >>> torch.allclose(scale_model_input(x0 + sigma * eps, sigma), x_t, atol=1e-6)
    True
    """
    if not isinstance(sample, torch.Tensor):
        raise ValueError(f"sample must be a torch.Tensor; got {type(sample).__name__}")
    s = per_sample_floats("sigma", sigma, sample, low=0.0, high=math.inf, example=14.6)
    c: Coef = [1 / math.sqrt(v * v + 1) for v in s] if isinstance(s, list) else 1 / math.sqrt(s * s + 1)
    if isinstance(c, list):
        return torch.stack([sample[i] * ci for i, ci in enumerate(c)])  # (B, ...)
    return sample * c


def karras_sigmas(num_inference_steps: int, sigma_min: float, sigma_max: float, *, rho: float = 7.0) -> torch.Tensor:
    r"""Karras et al.'s (EDM) noise levels: even steps in :math:`\sigma^{1/\rho}`, highest first, shape ``(N,)``.

    .. math:: \sigma_i = \Big(\sigma_{\max}^{1/\rho} + \tfrac{i}{N-1}\,
       \big(\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho}\big)\Big)^{\rho}, \qquad i = 0, \dots, N-1

    With :math:`\rho = 7` (the paper's value, and the one diffusers hard-codes in
    ``_convert_to_karras``) the steps are long at high noise and short near
    :math:`\sigma_{\min}`. :math:`\rho = 1` is an even grid in :math:`\sigma`. diffusers'
    ``use_karras_sigmas=True`` keeps only the two ends of the schedule it would have
    used and fills the inside with this grid; ``EDMEulerScheduler`` uses it with
    :math:`\sigma_{\min} = 0.002`, :math:`\sigma_{\max} = 80`. No final 0 is appended.

    :param num_inference_steps: :math:`N \ge 1` (one step gives :math:`\sigma_{\max}` alone).
    :param sigma_min: :math:`\sigma_{\min} > 0`.
    :param sigma_max: :math:`\sigma_{\max} > \sigma_{\min}`.
    :param rho: :math:`\rho > 0`.
    :returns: :math:`\sigma`, float64, from :math:`\sigma_{\max}` down to :math:`\sigma_{\min}`.

    >>> karras_sigmas(3, 1.0, 16.0, rho=1.0)
    tensor([16.0000,  8.5000,  1.0000], dtype=torch.float64)
    >>> s = karras_sigmas(10, 0.002, 80.0)
    >>> round(s[0].item(), 6), round(s[-1].item(), 6)
    (80.0, 0.002)
    """
    N = positive_int("num_inference_steps", num_inference_steps, example=25)
    for name, value, example in (("sigma_min", sigma_min, 0.002), ("sigma_max", sigma_max, 80.0), ("rho", rho, 7.0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 or math.isinf(value):
            raise ValueError(f"{name} must be a finite number > 0, e.g. {name}={example}; got {value!r}")
    if not sigma_max > sigma_min:
        raise ValueError(f"sigma_max must be > sigma_min={sigma_min}, e.g. sigma_max=80.0; got {sigma_max}")
    ramp = torch.linspace(0, 1, N, dtype=torch.float64) if N > 1 else torch.zeros(1, dtype=torch.float64)  # (N,)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    # sigma_i = (hi + i / (N - 1) * (lo - hi)) ** rho
    return (hi + ramp * (lo - hi)) ** rho
