r"""Flow matching (rectified flow): the straight path from data to noise, its schedules and its sampling loop.

.. math:: x_\sigma = \sigma\,\epsilon + (1 - \sigma)\,x_0, \qquad
   \frac{dx_\sigma}{d\sigma} = \epsilon - x_0

:math:`\sigma = 0` is clean data and :math:`\sigma = 1` is pure noise. The model
learns the constant velocity :math:`\epsilon - x_0`; sampling integrates it from
:math:`\sigma = 1` down to :math:`0`. This is the parameterisation of SD3, FLUX
and Wan (diffusers' ``FlowMatchEulerDiscreteScheduler``, DiffSynth's
``FlowMatchScheduler``). This module holds, in order: the path and its target;
the shift that moves sigmas towards noise, fixed (SD3, Wan) or from the token
count (FLUX.1's ``calculate_shift``); the sigma schedules diffusers and
DiffSynth-Studio build; and the Euler sampling loop.

**Schedules.** DiffSynth-Studio's templates space :math:`N` noise levels evenly
and then apply the shift: ``"Wan"`` takes :math:`N + 1` points from
:math:`\sigma_\text{start}` to 0 and drops the last (shift 5 by default);
``"FLUX.1"`` takes :math:`N` points down to :math:`\sigma_\text{min} = 0.003/1.002`
(shift 3), with :math:`\sigma_\text{start} = \sigma_\text{min} + (1 - \sigma_\text{min})\cdot`
``denoising_strength`` (DiffSynth-Studio 2.1.12, ``diffusion/flow_match.py``).

**Dynamic shift.** diffusers' FLUX.1 pipeline computes
:math:`\mu = \mu_b + (\mu_m - \mu_b)(L - L_b)/(L_m - L_b)` from the packed
sequence length :math:`L` and maps each sigma with :math:`e^\mu / (e^\mu + 1/\sigma - 1)`,
which is the ordinary shift with :math:`s = e^\mu` (multiply through by :math:`\sigma`).

**The loop.** For each of the :math:`N` sigmas, call the denoiser at timestep
:math:`1000\,\sigma_i` (twice with guidance, combined by :func:`cfg_combine`) and step
:math:`x \leftarrow x + (\sigma_{i+1} - \sigma_i)\,\hat v`, with :math:`\sigma_N = 0`: this
mirrors ``WanVideoPipeline.__call__`` and ``FlowMatchScheduler.step`` in
DiffSynth-Studio 2.1.12, where guidance is skipped when ``cfg_scale == 1``.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch

from infralens.core.args import Scalar, per_sample_floats, positive_int, same_shape
from infralens.core.mix import add_scaled, lerp
from infralens.families import LATENT_FAMILIES, FlowTemplate

from .guidance import cfg_combine


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


def dynamic_shift(
    image_seq_len: int,
    *,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    r"""The shift :math:`s = e^{\mu}` for a sequence of :math:`L` tokens, :math:`\mu` linear in :math:`L`.

    The defaults are those of diffusers' ``calculate_shift`` (FLUX.1): :math:`\mu`
    goes from ``base_shift`` at ``base_seq_len`` tokens to ``max_shift`` at
    ``max_seq_len`` tokens and keeps the same slope outside that range.

    :param image_seq_len: :math:`L`, tokens after packing (FLUX.1: :math:`H/16 \cdot W/16` for an
        :math:`H \times W` image).
    :param base_seq_len: :math:`L_\text{base}`.
    :param max_seq_len: :math:`L_\text{max}`, greater than :math:`L_\text{base}`.
    :param base_shift: :math:`\mu_\text{base}`.
    :param max_shift: :math:`\mu_\text{max}`.
    :returns: :math:`s = e^{\mu}`, the value to give :func:`shift_sigmas`.

    >>> round(dynamic_shift(4096), 4)             # 1024x1024 FLUX.1: 64 x 64 tokens
    3.1582
    >>> round(math.log(dynamic_shift(256)), 4)    # the base length gives mu = base_shift
    0.5
    """
    L = positive_int("image_seq_len", image_seq_len, example=4096)
    lo = positive_int("base_seq_len", base_seq_len, example=256)
    hi = positive_int("max_seq_len", max_seq_len, example=4096)
    if hi <= lo:
        raise ValueError(f"max_seq_len must be > base_seq_len={lo}, e.g. max_seq_len=4096; got {hi}")
    for name, value in (("base_shift", base_shift), ("max_shift", max_shift)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a real number (it is log s), e.g. {name}=0.5; got {value!r}")
    mu = base_shift + (max_shift - base_shift) * (L - lo) / (hi - lo)  # linear in the token count
    return math.exp(mu)


def flow_match_sigmas(num_inference_steps: int, *, shift: float = 1.0, num_train_timesteps: int = 1000) -> torch.Tensor:
    r"""The sigmas diffusers' ``FlowMatchEulerDiscreteScheduler`` visits, then 0, shape ``(N + 1,)``.

    The grid runs evenly from 1 to :math:`\sigma_{\min}` and is then shifted
    (:func:`shift_sigmas`). In diffusers, :math:`\sigma_{\min}` is the smallest
    training sigma :math:`1/T` *already shifted* when the scheduler is built, so
    with ``shift > 1`` the last sigma is shifted twice. Timesteps are
    :math:`T\sigma`: the first is :math:`T` itself, not :math:`T - 1`.

    :param num_inference_steps: :math:`N`.
    :param shift: :math:`s > 0` (``shift`` in the scheduler config).
    :param num_train_timesteps: :math:`T`.
    :returns: :math:`\sigma`, shape ``(N + 1,)``, float32, from 1 down to 0.

    >>> flow_match_sigmas(4, num_train_timesteps=4)
    tensor([1.0000, 0.7500, 0.5000, 0.2500, 0.0000])
    """
    N = positive_int("num_inference_steps", num_inference_steps, example=50)
    T = positive_int("num_train_timesteps", num_train_timesteps, example=1000)
    sigma_min = shift_sigmas(torch.tensor(1 / T, dtype=torch.float64), shift).item()  # shifted once
    grid = torch.linspace(1.0, sigma_min, N, dtype=torch.float64)  # (N,)
    sigmas = shift_sigmas(grid, shift)  # (N,) shifted (again, for the last one)
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()  # (N + 1,)


_TEMPLATES: dict[str, FlowTemplate] = {
    f.flow_template.name: f.flow_template for f in LATENT_FAMILIES.values() if f.flow_template is not None
}
FLOW_TEMPLATES: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {name: MappingProxyType({"sigma_min": t.sigma_min, "shift": t.shift}) for name, t in _TEMPLATES.items()}
)
"""The templates :func:`flow_sigmas` knows, with their smallest sigma and default shift (from the family records)."""


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
    spec = _TEMPLATES[template]
    s = spec.shift if shift is None else shift
    strength = denoising_strength
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not 0 < strength <= 1:
        raise ValueError(f"denoising_strength must lie in (0, 1], e.g. denoising_strength=1.0; got {strength!r}")
    lo = spec.sigma_min
    start = lo + (1.0 - lo) * strength
    if spec.drops_last:
        grid = torch.linspace(start, lo, n + 1, dtype=torch.float64)[:-1]  # (N,) the end point 0 is dropped
    else:
        grid = torch.linspace(start, lo, n, dtype=torch.float64)  # (N,) ends at sigma_min
    return shift_sigmas(grid, s).float()


def flow_sample(
    denoiser: Callable[..., torch.Tensor],
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    text: torch.Tensor | None = None,
    *,
    negative_text: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    shared: Mapping[str, object] | None = None,
) -> torch.Tensor:
    r"""Integrate the predicted velocity from :math:`\sigma_0` down to 0 with Euler steps.

    :param denoiser: called as ``denoiser(latents, timesteps, text, **shared)``; ``timesteps``
        is ``(B,)`` holding :math:`1000\,\sigma_i`.
    :param latents: the starting latent :math:`x_{\sigma_0}` (pure noise when :math:`\sigma_0 = 1`), ``(B, ...)``.
    :param sigmas: the :math:`N` sigmas to visit, decreasing, in ``[0, 1]``, shape ``(N,)``.
    :param text: prompt embeddings passed to every call.
    :param negative_text: embeddings of the negative (or empty) prompt; needed when
        ``guidance_scale != 1``.
    :param guidance_scale: :math:`w` (DiffSynth's ``cfg_scale``); 1 means one call per step.
    :param shared: keyword arguments given to every call, conditional or not (DiffSynth's
        ``inputs_shared``: an image condition, for example).
    :returns: the latent at :math:`\sigma = 0`, shape and dtype of ``latents``.

    >>> from infralens.nets import GaussianVelocity
    >>> from infralens.diffusion import flow_sigmas
    >>> field = GaussianVelocity(mean=0.5, std=0.0)   # all data is the point 0.5
    >>> x = flow_sample(field, torch.randn(2, 4, 8, 8), flow_sigmas("Wan", 5))
    >>> torch.allclose(x, torch.full_like(x, 0.5), atol=1e-5)
    True
    """
    if not isinstance(latents, torch.Tensor) or latents.ndim < 1:
        raise ValueError(f"latents must be a tensor (B, ...), e.g. torch.randn(1, 16, 21, 60, 104); got {latents!r}")
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten().tolist() if isinstance(sigmas, torch.Tensor) else None
    if s is None or len(s) == 0 or torch.as_tensor(sigmas).ndim != 1:
        raise ValueError(f"sigmas must be a 1-D tensor of N >= 1 values, e.g. flow_sigmas('Wan', 50); got {sigmas!r}")
    if any(not 0 <= v <= 1 for v in s) or any(b >= a for a, b in itertools.pairwise(s)):
        raise ValueError(f"sigmas must decrease strictly and lie in [0, 1], e.g. flow_sigmas('Wan', 50); got {s}")
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real):
        raise ValueError(f"guidance_scale must be a real number, e.g. guidance_scale=5.0; got {guidance_scale!r}")
    guided = guidance_scale != 1.0
    if guided and negative_text is None:
        raise ValueError(
            f"guidance_scale={guidance_scale} needs negative_text, the negative or empty prompt's embeddings "
            "(e.g. negative_text=torch.zeros_like(text)); or use guidance_scale=1.0 for one call per step"
        )
    kwargs = dict(shared or {})
    B = latents.shape[0] if latents.ndim else 1
    nexts = [*s[1:], 0.0]  # the last step goes to sigma = 0
    for sigma, sigma_next in zip(s, nexts, strict=True):
        timesteps = torch.full((B,), 1000.0 * sigma, device=latents.device)  # (B,) what the model reads
        with torch.no_grad():
            v = denoiser(latents, timesteps, text, **kwargs)  # (B, ...) conditional prediction
            if guided:
                v_neg = denoiser(latents, timesteps, negative_text, **kwargs)  # second call: negative prompt
                v = cfg_combine(v_neg, v, guidance_scale)  # v_neg + w (v - v_neg)
        latents = flow_euler_step(latents, v, sigma, sigma_next)  # x + (sigma' - sigma) v
    return latents
