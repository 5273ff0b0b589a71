r"""Latent shapes: what a family's VAE turns a pixel (or video) request into.

A VAE encoder shrinks height and width by a spatial factor :math:`s`, and a
video VAE also shrinks time by a temporal factor :math:`t_f`. Video VAEs in
these families are *causal*: the first frame is encoded alone and every later
group of :math:`t_f` frames becomes one latent frame, so

.. math:: F' = 1 + \frac{F - 1}{t_f}, \qquad H' = \frac{H}{s}, \qquad W' = \frac{W}{s}

and only :math:`F = 1 + t_f k` frames map exactly (CogVideoX's decoder works on
pairs of latent frames, which makes its exact counts :math:`1 + 8k`). Image
latents have four axes
``(B, C, H', W')``; video latents have five, ``(B, C, F', H', W')``, in the
layout of the families' VAEs in diffusers. One latent value stands for
:math:`r = 3\,F H W / (C\,F' H' W')` pixel values (:func:`compression_ratio`;
:math:`3 s^2 / C` for an image): more latent channels (SD3 and FLUX.1 have 16
where SD has 4) mean a smaller ratio, more room for detail, more values for the
denoiser to update.
"""

from __future__ import annotations

import math

import torch

from infralens.core.args import positive_int
from infralens.families import LATENT_FAMILIES, Family, get_family


def _neighbours(value: int, step: int, offset: int) -> list[int]:
    """The valid values ``offset + step * k`` (k >= 0) just below and above ``value``."""
    below = offset + step * ((value - offset) // step)
    above = below + step
    return [v for v in (below, above) if v >= max(offset, 1)] or [above]


def _nearest(values: list[int]) -> str:
    return " or ".join(map(str, values))


def _check_divisible(name: str, value: object, factor: int, fam: Family) -> int:
    size = positive_int(name, value, example=factor * 64)
    if size % factor:
        raise ValueError(
            f"{name}={size} is not a multiple of {factor}, the spatial factor of {fam.name!r} "
            f"(its VAE maps {factor} pixels to one latent cell); nearest valid: "
            f"{_nearest(_neighbours(size, factor, factor))}"
        )
    return size // factor


def latent_frames(family: str, frames: int) -> int:
    r"""Latent frames :math:`F' = 1 + (F - 1) / t_f` of a video family; ``F`` must be :math:`1 + t_f k`
    (:math:`1 + 8k` for CogVideoX).

    :param family: a video family of :data:`~infralens.families.LATENT_FAMILIES`.
    :param frames: :math:`F`, the number of pixel frames.
    :returns: :math:`F'`.

    >>> latent_frames("wan2.1", 81), latent_frames("ltxvideo", 121), latent_frames("cogvideox", 49)
    (21, 16, 13)
    """
    fam = get_family(family)
    if not fam.is_video:
        videos = ", ".join(repr(n) for n, f in LATENT_FAMILIES.items() if f.is_video)
        raise ValueError(
            f"frames={frames!r} given, but {fam.name!r} is an image family (latent (B, C, H', W')); "
            f"omit frames, or use a video family: {videos}"
        )
    F = positive_int("frames", frames, example=1 + 20 * fam.temporal_factor)
    tf, step = fam.temporal_factor, fam.frames_multiple
    if (F - 1) % step:
        why = f"its causal VAE encodes the first frame alone and then groups of {tf}"
        if step != tf:
            why += ", and its decoder rebuilds latent frames in pairs"
        raise ValueError(
            f"frames={F} is not valid for {fam.name!r}: {why}, so frames must be 1 + {step}k; "
            f"nearest valid: {_nearest(_neighbours(F, step, 1))}"
        )
    return 1 + (F - 1) // tf


def latent_shape(
    family: str,
    *,
    height: int,
    width: int,
    frames: int | None = None,
    batch: int = 1,
) -> tuple[int, ...]:
    r"""The latent shape a family's VAE produces for a request, in that VAE's layout.

    * image families: ``(B, C, H/s, W/s)``;
    * video families: ``(B, C, 1 + (F-1)/t_f, H/s, W/s)``.

    Sizes the VAE cannot represent exactly raise ``ValueError`` naming the
    argument, the rule and the nearest valid values; nothing is rounded.

    :param family: a key of :data:`~infralens.families.LATENT_FAMILIES`.
    :param height: :math:`H` in pixels, a multiple of the spatial factor :math:`s`.
    :param width: :math:`W` in pixels, a multiple of :math:`s`.
    :param frames: :math:`F`, required for video families (:math:`1 + t_f k`), not allowed for image families.
    :param batch: :math:`B`.
    :returns: the latent shape.

    >>> latent_shape("sdxl", height=1024, width=1024)
    (1, 4, 128, 128)
    >>> latent_shape("wan2.1", height=480, width=832, frames=81)
    (1, 16, 21, 60, 104)
    >>> latent_shape("wan2.1", height=480, width=832, frames=80)
    Traceback (most recent call last):
    ...
    ValueError: frames=80 is not valid for 'wan2.1': ... so frames must be 1 + 4k; nearest valid: 77 or 81
    """
    fam = get_family(family)
    B = positive_int("batch", batch, example=1)
    if fam.is_video and frames is None:
        raise ValueError(
            f"frames is required for the video family {fam.name!r}, e.g. frames={1 + 20 * fam.temporal_factor}"
        )
    F = latent_frames(family, frames) if frames is not None else None
    h = _check_divisible("height", height, fam.spatial_factor, fam)
    w = _check_divisible("width", width, fam.spatial_factor, fam)
    if F is None:
        return (B, fam.channels, h, w)  # (B, C, H', W')
    return (B, fam.channels, F, h, w)  # (B, C, F', H', W')


def pixel_multiple(family: str) -> int:
    r"""The step of valid pixel heights and widths for a family's DiT: :math:`s\,p`, VAE factor times patch.

    A DiT token covers a patch of :math:`p \times p` latent cells and each cell
    :math:`s \times s` pixels, so an exact token grid needs :math:`H` and
    :math:`W` to be multiples of :math:`s p` (DiffSynth-Studio's
    ``height_division_factor``, which rounds other sizes up).

    :param family: a key of :data:`~infralens.families.LATENT_FAMILIES`.
    :returns: :math:`s \cdot p_h` (the families' patches are square).

    >>> pixel_multiple("wan2.1"), pixel_multiple("wan2.2")
    (16, 32)
    """
    fam = get_family(family)
    return fam.spatial_factor * fam.patch[1]


def flux_pack(latents: torch.Tensor) -> torch.Tensor:
    r"""Pack FLUX latents into transformer tokens: ``(B, C, H', W') -> (B, H'/2 * W'/2, 4C)``.

    Each 2x2 patch of latent cells becomes one token. Tokens run over patch rows
    then patch columns (row-major); within a token the features are ordered
    channel first, then the patch row, then the patch column:
    feature ``4c + 2i + j`` holds ``latents[b, c, 2y + i, 2x + j]`` for token ``y * W'/2 + x``.
    This is the order of diffusers' ``FluxPipeline._pack_latents``.

    :param latents: ``(B, C, H', W')`` with even ``H'`` and ``W'``.
    :returns: ``(B, H'/2 * W'/2, 4C)``.

    >>> import torch
    >>> z = torch.randn(1, 16, 128, 128)  # a 1024x1024 FLUX latent
    >>> flux_pack(z).shape
    torch.Size([1, 4096, 64])
    >>> torch.equal(flux_pack(z)[0, 1, :4], z[0, 0, 0:2, 2:4].flatten())
    True
    """
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"latents must have 4 axes (B, C, H', W'), e.g. (1, 16, 128, 128); got {shape}")
    B, C, H, W = latents.shape
    if H % 2 or W % 2:
        raise ValueError(
            f"latents must have even H' and W' to form 2x2 patches (pixel sizes multiples of 16); "
            f"got H'={H}, W'={W}, e.g. H'={H + H % 2}, W'={W + W % 2}"
        )
    x = latents.view(B, C, H // 2, 2, W // 2, 2)  # (B, C, H'/2, 2, W'/2, 2)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H'/2, W'/2, C, 2, 2)
    return x.reshape(B, (H // 2) * (W // 2), C * 4)  # (B, N, 4C)


def flux_unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    r"""Undo :func:`flux_pack`: ``(B, H'/2 * W'/2, 4C) -> (B, C, H', W')`` with :math:`H' = H / 8`.

    :param tokens: ``(B, N, 4C)`` as produced by :func:`flux_pack`.
    :param height: :math:`H` in pixels, a multiple of 16 (8 for the VAE, 2 for the patch).
    :param width: :math:`W` in pixels, a multiple of 16.
    :returns: ``(B, C, H/8, W/8)``.

    >>> import torch
    >>> z = torch.randn(2, 16, 64, 96)  # 512x768 pixels
    >>> torch.equal(flux_unpack(flux_pack(z), height=512, width=768), z)
    True
    """
    fam = LATENT_FAMILIES["flux"]
    step = 2 * fam.spatial_factor
    for name, size in (("height", height), ("width", width)):
        size = positive_int(name, size, example=1024)
        if size % step:
            raise ValueError(
                f"{name}={size} is not a multiple of {step} (FLUX: 8 pixels per latent cell, 2x2 cells per "
                f"token); nearest valid: {_nearest(_neighbours(size, step, step))}"
            )
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tokens.shape[2] % 4:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must have shape (B, N, 4C), e.g. (1, 4096, 64); got {shape}")
    B, N, D = tokens.shape
    h, w = height // step, width // step  # patches per column and per row
    if N != h * w:
        raise ValueError(
            f"tokens has N={N} tokens but height={height}, width={width} give {h} x {w} = {h * w}; "
            f"pass the pixel size the tokens were packed from"
        )
    x = tokens.view(B, h, w, D // 4, 2, 2)  # (B, H'/2, W'/2, C, 2, 2)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, H'/2, 2, W'/2, 2)
    return x.reshape(B, D // 4, h * 2, w * 2)  # (B, C, H', W')


def compression_ratio(family: str, *, height: int, width: int, frames: int | None = None) -> float:
    r"""Pixel values per latent value, :math:`r = 3\,F H W / (C\,F' H' W')` (:math:`F = F' = 1` for images).

    :param family: a key of :data:`~infralens.families.LATENT_FAMILIES`.
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
