r"""The sinusoidal timestep embedding every stand-in denoiser here uses (one implementation).

.. math:: e(t) = [\cos(t\,\omega_0), \dots, \cos(t\,\omega_{d/2-1}),\ \sin(t\,\omega_0), \dots],
   \qquad \omega_i = 10000^{-i/(d/2)}

This is diffusers' ``get_timestep_embedding(t, d, flip_sin_to_cos=True,
downscale_freq_shift=0)`` and Wan's ``sinusoidal_embedding_1d`` (cosines
first); a small MLP turns it into the conditioning vector.
"""

from __future__ import annotations

import math

import torch

from infralens.core.args import positive_int


def timestep_features(timesteps: torch.Tensor | float, dim: int) -> torch.Tensor:
    r"""Sinusoidal timestep features :math:`[\cos(t\,\omega_i),\ \sin(t\,\omega_i)]`, :math:`\omega_i = 10^{-4i/(d/2)}`.

    :param timesteps: :math:`t`, ``(B,)`` or a scalar (0 to 1000: :math:`1000\,\sigma` in flow models).
    :param dim: :math:`d`, even.
    :returns: ``(B, d)`` float32.

    >>> timestep_features(torch.tensor([0.0]), 4).tolist()
    [[1.0, 1.0, 0.0, 0.0]]
    """
    d = positive_int("dim", dim, example=32)
    if d % 2:
        raise ValueError(f"dim must be even (half cosines, half sines), e.g. dim=32; got {d}")
    t = torch.as_tensor(timesteps).reshape(-1).to(torch.float64)  # (B,)
    half = d // 2
    omega = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)  # (d/2,)
    angles = t[:, None] * omega[None, :]  # (B, d/2)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()  # (B, d)
