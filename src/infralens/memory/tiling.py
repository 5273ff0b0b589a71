r"""VAE tiling: decode a large latent tile by tile, exactly (halo and crop) or approximately (blend).

A convolutional decoder's output pixel depends on the latent cells within its
*receptive radius* :math:`r` (in latent cells) and on nothing else. Decoding a
tile of :math:`t \times t` latent cells together with a halo of :math:`r`
cells on each side, then keeping only the tile's own :math:`st \times st`
pixels (:math:`s` the upsampling factor), gives exactly the pixels of the full
decode, while the largest activation shrinks from the whole image to one tile:

.. math:: \text{activation bytes} \propto (sH)(sW) \quad\longrightarrow\quad (s(t + 2r))^2

Real VAE decoders are not like that: GroupNorm takes statistics over the whole
image and the mid-block attends over all positions, so their receptive field is
global and no halo makes tiling exact. diffusers' ``AutoencoderKL.tiled_decode``
therefore overlaps tiles and blends them linearly across the overlap
(:func:`blended_tiled_decode` follows that scheme), which hides the seams but
does not remove the error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from infralens.diffusion._args import positive_int


class TinyConvDecoder(nn.Module):
    r"""A purely convolutional decoder: 3x3 convolutions, SiLU and nearest 2x upsampling, no norm, no attention.

    ``(B, C, H, W) -> (B, 3, sH, sW)`` with :math:`s = 2^{\text{upsamples}}`. With
    no normalisation or attention every output pixel sees only a bounded
    neighbourhood of latent cells, :attr:`receptive_radius`.

    >>> dec = TinyConvDecoder(latent_channels=4, width=8, upsamples=2)
    >>> dec(torch.randn(1, 4, 6, 10)).shape, dec.scale, dec.receptive_radius
    (torch.Size([1, 3, 24, 40]), 4, 2)
    """

    def __init__(self, latent_channels: int = 4, width: int = 32, upsamples: int = 2, out_channels: int = 3):
        super().__init__()
        c_in = positive_int("latent_channels", latent_channels, example=4)
        w = positive_int("width", width, example=32)
        c_out = positive_int("out_channels", out_channels, example=3)
        self.upsamples = positive_int("upsamples", upsamples, example=2)
        self.scale = 2**self.upsamples
        self.conv_in = nn.Conv2d(c_in, w, 3, padding=1)
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w, 3, padding=1))
            for _ in range(self.upsamples)
        )
        self.conv_out = nn.Conv2d(w, c_out, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode ``(B, C, h, w)`` latents to ``(B, 3, s*h, s*w)`` pixels."""
        h = nn.functional.silu(self.conv_in(latents))  # (B, width, h, w)
        for stage in self.up:
            h = nn.functional.silu(stage(h))  # (B, width, 2h, 2w), then 4h, ...
        return self.conv_out(h)  # (B, 3, s*h, s*w)

    @property
    def receptive_radius(self) -> int:
        """Latent cells on each side of an output pixel's own cell that can change it.

        Followed backwards from output pixel ``x``: each 3x3 convolution widens
        the interval by one position at its resolution, each nearest upsampling
        maps position ``p`` to ``p // 2``.
        """
        radius = 0
        for x in range(self.scale):  # the pattern repeats every s pixels
            lo, hi = x - 1, x + 1  # conv_out
            for _ in range(self.upsamples):
                lo, hi = (lo - 1) // 2, (hi + 1) // 2  # conv after the upsample, then the upsample
            lo, hi = lo - 1, hi + 1  # conv_in
            home = x // self.scale
            radius = max(radius, home - lo, hi - home)
        return radius


def _check_latents(z: torch.Tensor) -> None:
    if not isinstance(z, torch.Tensor) or z.ndim != 4:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must have 4 axes (B, C, H, W), e.g. (1, 4, 64, 64); got {got}")


def _scale(decoded: torch.Tensor, patch: torch.Tensor) -> int:
    s = decoded.shape[-1] // patch.shape[-1]
    if s < 1 or decoded.shape[-1] != s * patch.shape[-1] or decoded.shape[-2] != s * patch.shape[-2]:
        raise ValueError(
            f"decoder must upsample by a whole factor s: (B, C, h, w) -> (B, C_out, s*h, s*w); "
            f"got {tuple(patch.shape)} -> {tuple(decoded.shape)}"
        )
    return s


def tiled_decode(
    decoder: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, *, tile: int, halo: int
) -> torch.Tensor:
    r"""Decode ``tile`` x ``tile`` latent cells at a time, each with ``halo`` extra cells around it, and crop.

    With ``halo`` at least the decoder's receptive radius the result equals
    ``decoder(z)`` (up to floating-point rounding); with a smaller halo the
    pixels near the tile borders are wrong.

    :param decoder: ``(B, C, h, w) -> (B, C_out, s*h, s*w)``, e.g. :class:`TinyConvDecoder`.
    :param z: latents ``(B, C, H, W)``.
    :param tile: :math:`t`, latent cells per tile side (>= 1); edge tiles may be smaller.
    :param halo: :math:`r`, latent cells of context on each side (>= 0), clipped at the image border.
    :returns: pixels ``(B, C_out, s*H, s*W)``.

    >>> dec = TinyConvDecoder(width=8)
    >>> z = torch.randn(1, 4, 20, 28)
    >>> with torch.no_grad():
    ...     full, tiled = dec(z), tiled_decode(dec, z, tile=8, halo=dec.receptive_radius)
    >>> torch.allclose(tiled, full, atol=1e-6)
    True
    """
    _check_latents(z)
    t = positive_int("tile", tile, example=32)
    if isinstance(halo, bool) or not isinstance(halo, int) or halo < 0:
        raise ValueError(
            f"halo must be a whole number >= 0 (the receptive radius for an exact result), e.g. halo=2; got {halo!r}"
        )
    B, _, H, W = z.shape
    out = None
    for i in range(0, H, t):
        for j in range(0, W, t):
            top, left = max(i - halo, 0), max(j - halo, 0)
            patch = z[:, :, top : i + t + halo, left : j + t + halo]  # (B, C, <= t + 2r, <= t + 2r)
            decoded = decoder(patch)  # (B, C_out, s * patch rows, s * patch cols)
            s = _scale(decoded, patch)
            if out is None:
                out = decoded.new_empty(B, decoded.shape[1], s * H, s * W)  # (B, C_out, sH, sW)
            rows, cols = min(t, H - i), min(t, W - j)
            dy, dx = s * (i - top), s * (j - left)  # where the tile's own pixels start inside the decoded patch
            out[:, :, s * i : s * (i + rows), s * j : s * (j + cols)] = decoded[
                :, :, dy : dy + s * rows, dx : dx + s * cols
            ]
    return out


def blended_tiled_decode(
    decoder: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, *, tile: int, overlap_factor: float = 0.25
) -> torch.Tensor:
    r"""diffusers' tiling scheme: overlapping tiles without a halo, blended linearly where they overlap.

    Tiles of :math:`t` latent cells start every :math:`\lfloor t(1-f) \rfloor`
    cells; each decoded tile is blended with the already blended tile above it,
    then with the one to its left, over :math:`e = \lfloor s t f \rfloor` pixels,
    with weight :math:`y/e` on the new tile at row (or column) :math:`y`:

    .. math:: b_y \leftarrow a_{n_a - e + y} \left(1 - \frac{y}{e}\right) + b_y \frac{y}{e}, \qquad 0 \le y < e

    (:math:`n_a` rows in the tile above; columns likewise)

    and the first :math:`st - e` pixels of each tile are kept. Every tile sees
    zero padding at its own borders, so pixels near the seams differ from a full
    decode; the blend only makes the difference smooth.

    :param decoder: ``(B, C, h, w) -> (B, C_out, s*h, s*w)``.
    :param z: latents ``(B, C, H, W)``.
    :param tile: :math:`t`, latent cells per tile side (>= 2).
    :param overlap_factor: :math:`f` in ``(0, 1)``, the share of a tile that overlaps its neighbour
        (``tile_overlap_factor`` in diffusers, 0.25).
    :returns: pixels ``(B, C_out, s*H, s*W)``.

    >>> dec = TinyConvDecoder(width=8)
    >>> z = torch.randn(1, 4, 20, 28)
    >>> with torch.no_grad():
    ...     blended, full = blended_tiled_decode(dec, z, tile=8), dec(z)
    >>> blended.shape == full.shape, torch.allclose(blended, full, atol=1e-6)
    (True, False)
    """
    _check_latents(z)
    t = positive_int("tile", tile, example=64)
    if isinstance(overlap_factor, bool) or not isinstance(overlap_factor, int | float) or not 0 < overlap_factor < 1:
        raise ValueError(f"overlap_factor must lie in (0, 1), e.g. overlap_factor=0.25; got {overlap_factor!r}")
    stride = int(t * (1 - overlap_factor))
    if stride < 1:
        raise ValueError(f"tile * (1 - overlap_factor) must be >= 1 latent cell, e.g. tile=64; got tile={t}")
    H, W = z.shape[-2:]
    grid = [[decoder(z[:, :, i : i + t, j : j + t]) for j in range(0, W, stride)] for i in range(0, H, stride)]
    s = _scale(grid[0][0], z[:, :, :t, :t])
    extent = int(s * t * overlap_factor)  # e, pixels blended at each seam
    keep = s * t - extent  # pixels of each tile kept
    rows = []
    for r, line in enumerate(grid):
        kept = []
        for c, b in enumerate(line):
            if r > 0:  # blend with the (already blended) tile above, over its last e rows
                a = grid[r - 1][c]
                e = min(a.shape[-2], b.shape[-2], extent)
                w = torch.arange(e, dtype=b.dtype, device=b.device).div_(e).view(-1, 1)  # (e, 1)
                b[:, :, :e, :] = a[:, :, a.shape[-2] - e :, :] * (1 - w) + b[:, :, :e, :] * w
            if c > 0:  # then with the tile to the left, over its last e columns
                a = line[c - 1]
                e = min(a.shape[-1], b.shape[-1], extent)
                w = torch.arange(e, dtype=b.dtype, device=b.device).div_(e)  # (e,)
                b[:, :, :, :e] = a[:, :, :, a.shape[-1] - e :] * (1 - w) + b[:, :, :, :e] * w
            kept.append(b[:, :, :keep, :keep])
        rows.append(torch.cat(kept, dim=-1))  # (B, C_out, <= keep, sW)
    return torch.cat(rows, dim=-2)  # (B, C_out, sH, sW)
