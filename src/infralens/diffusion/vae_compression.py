r"""How many pixel values one latent value stands for: a VAE's compression ratio.

An image of :math:`3 \times H \times W` values becomes a latent of
:math:`C \times H/s \times W/s` values, so

.. math:: r = \frac{3\,H\,W}{C\,(H/s)\,(W/s)} = \frac{3\,s^2}{C}

whatever the size; a video VAE also divides frames,
:math:`r = 3\,F H W / (C\,F' H' W')`. More latent channels (SD3 and FLUX.1 have 16
where SD has 4) mean a smaller ratio: more room for detail, more values for the
denoiser to update.
"""

from __future__ import annotations

import math

from .latents import get_family, latent_shape


def compression_ratio(family: str, *, height: int, width: int, frames: int | None = None) -> float:
    r"""Pixel values per latent value, :math:`r = 3\,F H W / (C\,F' H' W')` (:math:`F = F' = 1` for images).

    :param family: a key of :data:`~infralens.diffusion.LATENT_FAMILIES`.
    :param height: :math:`H` in pixels, a multiple of the family's spatial factor.
    :param width: :math:`W` in pixels, likewise.
    :param frames: :math:`F` for video families (``None`` for image families).
    :returns: :math:`r`, exact (the shapes divide).

    >>> compression_ratio("sd", height=512, width=512)          # 3 * 8**2 / 4
    48.0
    >>> compression_ratio("flux", height=1024, width=1024)      # 3 * 8**2 / 16
    12.0
    """
    shape = latent_shape(family, height=height, width=width, frames=frames)  # (1, C, [F',] H', W')
    pixels = 3 * height * width * (frames if get_family(family).is_video else 1)
    return pixels / math.prod(shape[1:])
