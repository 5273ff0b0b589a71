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

from infralens.core.args import positive_int


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

    :param decoder: ``(B, C, h, w) -> (B, C_out, s*h, s*w)``, e.g. :class:`~infralens.nets.TinyConvDecoder`.
    :param z: latents ``(B, C, H, W)``.
    :param tile: :math:`t`, latent cells per tile side (>= 1); edge tiles may be smaller.
    :param halo: :math:`r`, latent cells of context on each side (>= 0), clipped at the image border.
    :returns: pixels ``(B, C_out, s*H, s*W)``.

    >>> from infralens.nets import TinyConvDecoder
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

    >>> from infralens.nets import TinyConvDecoder
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


def _pair(name: str, value: object, example: tuple[int, int]) -> tuple[int, int]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"{name} must be (height, width) in latent cells, e.g. {name}={example}; got {value!r}")
    return (
        positive_int(f"{name}[0]", value[0], example=example[0]),
        positive_int(f"{name}[1]", value[1], example=example[1]),
    )


def diffsynth_tiles(
    height: int, width: int, *, tile_size: tuple[int, int] = (30, 52), tile_stride: tuple[int, int] = (15, 26)
) -> tuple[tuple[int, int, int, int], ...]:
    r"""The latent tiles DiffSynth-Studio's Wan VAE decodes, as ``(top, bottom, left, right)`` boxes, in its order.

    A tile of ``tile_size`` latent cells starts every ``tile_stride`` cells along
    each axis, until the previous tile already reaches the edge; tiles that run
    past the edge are cut there. The defaults are ``WanVideoPipeline.__call__``'s,
    which decodes this way unless ``tiled=False``. With half-overlapping tiles of
    half the latent (480 by 832 pixels: a 60 by 104 latent) that is 3 x 3 tiles
    covering :math:`2.25` times the latent's area:

    >>> boxes = diffsynth_tiles(60, 104)
    >>> len(boxes), boxes[:2]
    (9, ((0, 30, 0, 52), (0, 30, 26, 78)))
    >>> sum((b - t) * (r - l) for t, b, l, r in boxes) / (60 * 104)
    2.25

    :param height: :math:`H'`, latent rows.
    :param width: :math:`W'`, latent columns.
    :param tile_size: latent cells per tile ``(rows, columns)``.
    :param tile_stride: latent cells between tile starts ``(rows, columns)``.
    :returns: the boxes, row by row.
    """
    H = positive_int("height", height, example=60)
    W = positive_int("width", width, example=104)
    (th, tw), (sh, sw) = _pair("tile_size", tile_size, (30, 52)), _pair("tile_stride", tile_stride, (15, 26))
    boxes = []
    for top in range(0, H, sh):
        if top - sh >= 0 and top - sh + th >= H:
            continue  # the previous row of tiles already reached the bottom
        for left in range(0, W, sw):
            if left - sw >= 0 and left - sw + tw >= W:
                continue  # the previous tile already reached the right edge
            boxes.append((top, min(top + th, H), left, min(left + tw, W)))
    return tuple(boxes)


def diffsynth_tile_coverage(
    height: int, width: int, *, tile_size: tuple[int, int] = (30, 52), tile_stride: tuple[int, int] = (15, 26)
) -> float:
    r"""How many times :func:`diffsynth_tiles` cover the latent: the tiles' areas over :math:`H' W'`.

    Every latent cell is decoded once per tile that contains it, so for a decoder
    made of convolutions this is the FLOPs of the tiled decode over the one-pass
    decode (a decoder with attention inside a frame costs a little less).

    >>> diffsynth_tile_coverage(60, 104), round(diffsynth_tile_coverage(90, 160), 2)   # 480p, 720p
    (2.25, 3.02)
    """
    boxes = diffsynth_tiles(height, width, tile_size=tile_size, tile_stride=tile_stride)
    return sum((bottom - top) * (right - left) for top, bottom, left, right in boxes) / (height * width)


def _ramp(length: int, border: int, first: bool, last: bool) -> torch.Tensor:
    """1 inside, rising linearly over ``border`` pixels at an edge that is not the image's edge."""
    x = torch.ones(length)
    if not first:
        x[:border] = (torch.arange(border) + 1) / border
    if not last:
        x[-border:] = torch.flip((torch.arange(border) + 1) / border, dims=(0,))
    return x


def diffsynth_tiled_decode(
    decoder: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    *,
    tile_size: tuple[int, int] = (30, 52),
    tile_stride: tuple[int, int] = (15, 26),
) -> torch.Tensor:
    r"""DiffSynth-Studio's tiled video decode: overlapping tiles, each weighted by a linear ramp, then normalised.

    Every tile :math:`k` of :func:`diffsynth_tiles` is decoded on its own; its
    pixels get a weight :math:`m_k(p)` that rises linearly from the tile's inner
    edges over the overlap, :math:`(\text{size} - \text{stride}) \cdot s` pixels
    (:math:`s` the decoder's upsampling), and is 1 elsewhere and at the image's
    own edges. A pixel is the weighted mean of the tiles that cover it, clamped to
    :math:`[-1, 1]` as DiffSynth does:

    .. math:: x(p) = \frac{\sum_k m_k(p)\, D(z_k)(p)}{\sum_k m_k(p)}

    Each tile's decoder sees zero padding at its own borders (and a video VAE's
    attention sees only the tile), so the result is not the one-pass decode; the
    ramps only make the seams smooth. With a decoder whose every pixel depends on
    one latent cell, it is exact:

    >>> def nearest(z):   # (B, C, F', h, w) -> (B, C, F', 8h, 8w), no neighbours
    ...     return z.repeat_interleave(8, -2).repeat_interleave(8, -1)
    >>> z = torch.rand(1, 3, 2, 12, 20) * 2 - 1
    >>> torch.allclose(diffsynth_tiled_decode(nearest, z, tile_size=(6, 10), tile_stride=(3, 5)), nearest(z))
    True

    :param decoder: ``(B, C, F', h, w) -> (B, C_out, F, s*h, s*w)``, e.g. ``TinyCausalVideoVAE().decode``.
    :param z: latents ``(B, C, F', H', W')``.
    :param tile_size: latent cells per tile ``(rows, columns)``; the pipeline's default ``(30, 52)``.
    :param tile_stride: latent cells between tile starts; the default ``(15, 26)``.
    :returns: pixels ``(B, C_out, F, s*H', s*W')``.
    """
    if not isinstance(z, torch.Tensor) or z.ndim != 5:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must have 5 axes (B, C, F', H', W'), e.g. (1, 16, 21, 60, 104); got {got}")
    (th, tw), (sh, sw) = _pair("tile_size", tile_size, (30, 52)), _pair("tile_stride", tile_stride, (15, 26))
    if sh > th or sw > tw:
        raise ValueError(
            f"tile_stride must not exceed tile_size={(th, tw)} (tiles must touch or overlap); got {(sh, sw)}"
        )
    H, W = z.shape[-2:]
    values = weight = None
    for top, bottom, left, right in diffsynth_tiles(H, W, tile_size=(th, tw), tile_stride=(sh, sw)):
        tile = decoder(z[..., top:bottom, left:right])  # (B, C_out, F, s*h, s*w)
        s = tile.shape[-1] // (right - left)
        if values is None:
            values = tile.new_zeros(*tile.shape[:3], s * H, s * W)  # (B, C_out, F, sH', sW')
            weight = tile.new_zeros(1, 1, 1, s * H, s * W)
        rows = _ramp(tile.shape[-2], (th - sh) * s, top == 0, bottom >= H)  # (s*h,)
        cols = _ramp(tile.shape[-1], (tw - sw) * s, left == 0, right >= W)  # (s*w,)
        mask = torch.minimum(rows[:, None], cols[None, :]).to(tile)  # (s*h, s*w): the nearer edge decides
        values[..., s * top : s * top + tile.shape[-2], s * left : s * left + tile.shape[-1]] += tile * mask
        weight[..., s * top : s * top + tile.shape[-2], s * left : s * left + tile.shape[-1]] += mask
    return (values / weight).clamp_(-1, 1)  # the weighted mean of the tiles covering each pixel
