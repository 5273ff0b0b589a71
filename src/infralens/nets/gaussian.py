r"""The exact flow-matching velocity for Gaussian data: a denoiser whose right answer is known.

If every coordinate of the data is :math:`x_0 \sim \mathcal N(m, d^2)` and
:math:`x_\sigma = (1 - \sigma)\,x_0 + \sigma\,\epsilon`, the best possible
velocity prediction :math:`\mathbb E[\epsilon - x_0 \mid x_\sigma]` has a closed form

.. math:: v(x, \sigma) = \frac{\sigma - a\,d^2}{a^2 d^2 + \sigma^2}\,(x - a\,m) - m, \qquad a = 1 - \sigma

and the ODE :math:`dx/d\sigma = v` carries the noise :math:`x_1 = \epsilon` to
:math:`x_0 = m + d\,\epsilon` exactly. More generally it keeps
:math:`z = (x_\sigma - a\,m)/s_\sigma` fixed, with :math:`s_\sigma = \sqrt{a^2 d^2 + \sigma^2}`
the standard deviation of :math:`x_\sigma`, so the exact solution from any
:math:`\sigma` to any :math:`\sigma'` is known (:meth:`GaussianVelocity.exact_flow`).
With :math:`d = 0` all data is the one point :math:`m`, the velocity is
:math:`(x - m)/\sigma`, the paths are straight lines, and a single Euler step
from :math:`\sigma = 1` lands on :math:`m`. With :math:`d > 0` the paths bend and Euler needs steps; its error against
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

    def exact_flow(self, latents: torch.Tensor, sigma_from: float, sigma_to: float = 0.0) -> torch.Tensor:
        r"""The exact solution of :math:`dx/d\sigma = v` from :math:`\sigma` to :math:`\sigma'`.

        .. math:: x_{\sigma'} = a'\,m + s_{\sigma'}\,\frac{x_\sigma - a\,m}{s_\sigma}, \qquad
           a = 1 - \sigma, \quad s_\sigma = \sqrt{a^2 d^2 + \sigma^2}

        The reference a sampler is measured against: a solver that starts from
        ``latents`` at ``sigma_from`` and ends at ``sigma_to`` should land here.

        :param latents: :math:`x_\sigma`, any shape.
        :param sigma_from: :math:`\sigma` in ``[0, 1]`` (above 0 when ``std`` is 0).
        :param sigma_to: :math:`\sigma'` in ``[0, 1]``.
        :returns: :math:`x_{\sigma'}`, shape and dtype of ``latents`` (computed in float64).

        >>> field = GaussianVelocity(mean=0.5, std=2.0)
        >>> eps = torch.randn(3)
        >>> torch.allclose(field.exact_flow(eps, 1.0), field.exact_sample(eps), atol=1e-6)
        True
        """
        for name, value in (("sigma_from", sigma_from), ("sigma_to", sigma_to)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], e.g. {name}=1.0; got {value!r}")
        m, d2 = self.mean, self.std**2

        def spread(sigma: float) -> float:  # s_sigma, the standard deviation of x_sigma
            return ((1 - sigma) ** 2 * d2 + sigma**2) ** 0.5

        if spread(sigma_from) == 0:
            raise ValueError("sigma_from must be > 0 when std is 0 (every x_0 is the same point), e.g. sigma_from=1.0")
        z = (latents.to(torch.float64) - (1 - sigma_from) * m) / spread(sigma_from)  # the invariant of the flow
        return ((1 - sigma_to) * m + spread(sigma_to) * z).to(latents.dtype)
