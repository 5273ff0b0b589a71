r"""The exact flow-matching velocity for Gaussian data: a denoiser whose right answer is known.

If every coordinate of the data is :math:`x_0 \sim \mathcal N(m, d^2)` and
:math:`x_\sigma = (1 - \sigma)\,x_0 + \sigma\,\epsilon`, the best possible
velocity prediction :math:`\mathbb E[\epsilon - x_0 \mid x_\sigma]` has a closed form

.. math:: v(x, \sigma) = \frac{\sigma - a\,d^2}{a^2 d^2 + \sigma^2}\,(x - a\,m) - m, \qquad a = 1 - \sigma

and the ODE :math:`dx/d\sigma = v` carries the noise :math:`x_1 = \epsilon` to
:math:`x_0 = m + d\,\epsilon` exactly. With :math:`d = 0` all data is the one point
:math:`m`, the velocity is :math:`(x - m)/\sigma`, the paths are straight lines,
and a single Euler step from :math:`\sigma = 1` lands on :math:`m`. With
:math:`d > 0` the paths bend and Euler needs steps; its error against
:meth:`GaussianVelocity.exact_sample` is the price of a short schedule.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn


class GaussianVelocity(nn.Module):
    r"""``forward(latents, timesteps, text=None) -> v``: the exact velocity for data :math:`\mathcal N(m, d^2)`.

    A drop-in denoiser for sampling loops: it reads the latent and the timestep
    (:math:`\sigma = t / 1000`, DiffSynth's convention) and ignores ``text``, so
    classifier-free guidance costs a second call and changes nothing.

    :param mean: :math:`m`.
    :param std: :math:`d \ge 0`; 0 is a point mass at :math:`m`.

    >>> field = GaussianVelocity(mean=0.5, std=0.0)
    >>> x1 = torch.randn(1, 4, 8, 8)                  # pure noise, sigma = 1
    >>> x0 = x1 + (0.0 - 1.0) * field(x1, torch.tensor([1000.0]))
    >>> torch.allclose(x0, torch.full_like(x0, 0.5), atol=1e-6)
    True
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        for name, value in (("mean", mean), ("std", std)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a real number, e.g. {name}=0.5; got {value!r}")
        if std < 0:
            raise ValueError(f"std must be >= 0 (0 is a point mass), e.g. std=0.5; got {std}")
        self.mean, self.std = float(mean), float(std)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        sigma = torch.as_tensor(timesteps, dtype=torch.float64, device=latents.device).reshape(-1) / 1000  # (B,)
        if sigma.numel() not in (1, latents.shape[0]) or (sigma <= 0).any() or (sigma > 1).any():
            raise ValueError(
                f"timesteps must be 1000 * sigma with sigma in (0, 1], one per sample or one for all, "
                f"e.g. torch.tensor([1000.0]); got {torch.as_tensor(timesteps).tolist()}"
            )
        sigma = sigma.reshape((-1,) + (1,) * (latents.ndim - 1))  # (B, 1, ...) broadcasts over the latent
        a, m, d2 = 1 - sigma, self.mean, self.std**2
        # v = (sigma - a d^2) / (a^2 d^2 + sigma^2) * (x - a m) - m
        coef = (sigma - a * d2) / (a * a * d2 + sigma * sigma)
        return (coef * (latents.to(torch.float64) - a * m) - m).to(latents.dtype)  # (B, ...)

    def exact_sample(self, noise: torch.Tensor) -> torch.Tensor:
        r"""Where the exact ODE from :math:`x_1 = \epsilon` ends: :math:`x_0 = m + d\,\epsilon`."""
        return self.mean + self.std * noise
