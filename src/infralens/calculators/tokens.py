r"""Transformer tokens of a latent: how many positions the denoiser's attention sees.

DiTs cut the latent into patches: :math:`(1, 2, 2)` latent cells per token for the
video families here (Wan, HunyuanVideo, CogVideoX, LTX-Video), :math:`2 \times 2`
for the image DiTs (SD3, FLUX), so

.. math:: N = F' \cdot \frac{H'}{p_h} \cdot \frac{W'}{p_w}.

UNets have no patchify; for them the count is the largest self-attention
sequence: SD 1.x attends at the latent resolution (:math:`p = 1`), SDXL's first
attention block sits one downsampling deeper (:math:`p = 2`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infralens.diffusion import LATENT_FAMILIES, latent_shape
from infralens.diffusion._args import positive_int

PATCH: dict[str, tuple[int, int, int]] = {
    "sd": (1, 1, 1),
    "sdxl": (1, 2, 2),
    "sd3": (1, 2, 2),
    "flux": (1, 2, 2),
    "wan2.1": (1, 2, 2),
    "wan2.2": (1, 2, 2),
    "hunyuanvideo": (1, 2, 2),
    "cogvideox": (1, 2, 2),
    "ltxvideo": (1, 1, 1),
}
"""Latent cells per attention position ``(frames, height, width)`` for each family.

LTX-Video's VAE already compresses 32x in space, so its transformer uses patch 1.
"""


@dataclass(frozen=True)
class LatentTokens:
    """A request's latent and the sequence its denoiser attends over."""

    family: str
    latent: tuple[int, ...]
    """The latent shape (:func:`~infralens.diffusion.latent_shape`)."""
    patch: tuple[int, int, int]
    """Latent cells per token (frames, height, width)."""
    grid: tuple[int, int, int]
    """Tokens along frames, height and width."""
    tokens: int
    """Tokens per sample, :math:`N`."""


def latent_tokens(family: str, *, height: int, width: int, frames: int | None = None, batch: int = 1) -> LatentTokens:
    r"""Latent shape and token count :math:`N = F' \cdot H'/p_h \cdot W'/p_w` of a request.

    :param family: a key of :data:`~infralens.diffusion.LATENT_FAMILIES`.
    :param height: pixels; the latent height must split into whole patches.
    :param width: pixels, likewise.
    :param frames: for video families.
    :param batch: samples (the token count is per sample).
    :returns: a :class:`LatentTokens`.

    >>> t = latent_tokens("wan2.1", height=720, width=1280, frames=81)
    >>> t.latent, t.grid, t.tokens
    ((1, 16, 21, 90, 160), (21, 45, 80), 75600)
    >>> latent_tokens("flux", height=1024, width=1024).tokens
    4096
    """
    positive_int("batch", batch, example=1)
    shape = latent_shape(family, height=height, width=width, frames=frames, batch=batch)
    pf, ph, pw = PATCH[family]
    f = shape[2] if LATENT_FAMILIES[family].is_video else 1
    h, w = shape[-2], shape[-1]
    step = LATENT_FAMILIES[family].spatial_factor * ph
    for name, cells, pixels in (("height", h, height), ("width", w, width)):
        if cells % ph:
            below, above = pixels - pixels % step, pixels - pixels % step + step
            raise ValueError(
                f"{name}={pixels} gives {cells} latent cells, which do not split into patches of {ph} "
                f"for {family!r}: {name} must be a multiple of {step}; nearest valid: {below or above} or {above}"
            )
    grid = (f // pf, h // ph, w // pw)
    return LatentTokens(family, shape, (pf, ph, pw), grid, math.prod(grid))
