r"""Transformer tokens of a latent: how many positions the denoiser's attention sees.

DiTs cut the latent into patches: :math:`(1, 2, 2)` latent cells (frames,
height, width) per token for the video DiTs here (Wan, HunyuanVideo, CogVideoX),
:math:`2 \times 2` for the image DiTs (SD3, FLUX), and one cell for LTX-Video,
whose VAE already compresses 32x in space. So

.. math:: N = \frac{F'}{p_f} \cdot \frac{H'}{p_h} \cdot \frac{W'}{p_w}

with :math:`F' = 1` for images. The UNets (SD, SDXL) have no patches; for them
:math:`N` counts the positions of their largest self-attention, in the first
attention block: at the latent resolution for SD 1.x (:math:`p = 1`), one
downsampling deeper for SDXL, whose first block has no attention (:math:`p = 2`).
The count is per sample and covers the latent only: a joint-attention model
(SD3, FLUX, HunyuanVideo) appends its text tokens to the same sequence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from infralens.core import multiple_of
from infralens.diffusion import latent_shape
from infralens.families import LATENT_FAMILIES, get_family

DIFFUSERS_TEXT_TOKENS: Mapping[str, int] = MappingProxyType(
    {"StableDiffusion3Pipeline": 256, "FluxPipeline": 512, "HunyuanVideoPipeline": 256, "WanPipeline": 512}
)
"""The ``max_sequence_length`` default of diffusers 0.42.1 pipelines: T5 (or LLaMA) prompt tokens, padded to it.

SD3, FLUX and HunyuanVideo append these tokens to the latent's in one joint
attention; Wan reads them through a separate cross-attention. ``tests/upstream``
reads every entry from the pipelines' signatures.

>>> DIFFUSERS_TEXT_TOKENS["FluxPipeline"]
512
"""

PATCH: Mapping[str, tuple[int, int, int]] = MappingProxyType({n: f.patch for n, f in LATENT_FAMILIES.items()})
"""Latent cells per attention position ``(frames, height, width)``, by family: a view of the family records.

For the DiTs this is the patch size; for the UNets (``"sd"``, ``"sdxl"``) it is
the downsampling between the latent and the first self-attention block.
"""

UNETS = frozenset(n for n, f in LATENT_FAMILIES.items() if f.denoiser == "unet")
"""Families whose denoiser is a UNet: :data:`PATCH` is a downsampling there, not a patch."""


@dataclass(frozen=True)
class LatentTokens:
    """A request's latent and the sequence its denoiser attends over."""

    family: str
    latent: tuple[int, ...]
    """The latent shape (:func:`~infralens.diffusion.latent_shape`), batch first."""
    patch: tuple[int, int, int]
    """Latent cells per token (frames, height, width); see :data:`PATCH`."""
    grid: tuple[int, int, int]
    """Tokens along frames, height and width."""
    tokens: int
    """Tokens per sample, :math:`N` (the product of :attr:`grid`)."""
    counted: str
    """What :attr:`tokens` counts, in words."""


def _counted(family: str, patch: tuple[int, int, int]) -> str:
    pf, ph, pw = patch
    if family in UNETS:
        where = "the latent resolution" if ph == 1 else f"1/{ph} of the latent resolution"
        return f"UNet: positions of its first self-attention, at {where}"
    if LATENT_FAMILIES[family].is_video:
        return f"DiT patches of {pf}x{ph}x{pw} latent cells (frames x height x width)"
    return f"DiT patches of {ph}x{pw} latent cells (height x width)"


def latent_tokens(family: str, *, height: int, width: int, frames: int | None = None, batch: int = 1) -> LatentTokens:
    r"""Latent shape and token count :math:`N = F'/p_f \cdot H'/p_h \cdot W'/p_w` of a request.

    Height and width must be multiples of the spatial factor times the patch
    (checked first, so that a suggested size passes both the VAE's rule and the
    patch's); the latent comes from :func:`~infralens.diffusion.latent_shape`,
    with its rules and messages for frames.

    :param family: a key of :data:`~infralens.families.LATENT_FAMILIES`.
    :param height: :math:`H` in pixels; :math:`H'` must split into whole patches.
    :param width: :math:`W` in pixels, likewise.
    :param frames: :math:`F`, for video families only.
    :param batch: :math:`B`, samples (:math:`N` is per sample).
    :returns: a :class:`LatentTokens`.

    >>> t = latent_tokens("wan2.1", height=720, width=1280, frames=81)
    >>> t.latent, t.grid, t.tokens == 21 * (90 // 2) * (160 // 2)
    ((1, 16, 21, 90, 160), (21, 45, 80), True)
    >>> latent_tokens("flux", height=1024, width=1024).tokens == (128 // 2) ** 2
    True
    >>> latent_tokens("wan2.1", height=481, width=832, frames=81)
    Traceback (most recent call last):
    ...
    ValueError: height=481 is not a multiple of 16 (...); nearest valid: 480 or 496
    """
    fam = get_family(family)
    patch = fam.patch
    for name, pixels, p in (("height", height, patch[1]), ("width", width, patch[2])):
        # one rule for the whole request (VAE cells and patches), so a suggested size passes both
        why = f"{fam.spatial_factor} pixels per latent cell x {p} cells per patch of {family!r}"
        multiple_of(name, pixels, fam.spatial_factor * p, why=why)
    shape = latent_shape(family, height=height, width=width, frames=frames, batch=batch)
    f = shape[2] if fam.is_video else 1  # (B, C, F', H', W') or (B, C, H', W')
    h, w = shape[-2], shape[-1]
    grid = (f // patch[0], h // patch[1], w // patch[2])  # (F'/p_f, H'/p_h, W'/p_w); p_f = 1 everywhere
    return LatentTokens(family, shape, patch, grid, math.prod(grid), _counted(family, patch))
