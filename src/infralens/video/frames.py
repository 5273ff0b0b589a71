"""The frame axis of a video latent, folded into the batch for 2-D layers and unfolded back.

A video latent is ``(B, C, F, H, W)``. Layers that work on images (a 2-D conv, a
per-frame VAE decoder) want ``(B*F, C, H, W)``. The fold must first move ``F``
next to ``B``; reshaping without the permute gives a tensor of the right shape
whose "frames" mix channels and time.
"""

from __future__ import annotations

import torch


def _check(name: str, x: torch.Tensor, ndim: int, layout: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != ndim:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have {ndim} axes {layout}, e.g. (1, 16, 21, 60, 104); got {got}")


def frames_to_batch(latents: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, H, W) -> (B*F, C, H, W)``: row ``b*F + f`` is frame ``f`` of sample ``b``.

    >>> z = torch.randn(2, 16, 5, 4, 6)
    >>> x = frames_to_batch(z)
    >>> x.shape, torch.equal(x[1 * 5 + 3], z[1, :, 3])
    (torch.Size([10, 16, 4, 6]), True)
    """
    _check("latents", latents, 5, "(B, C, F, H, W)")
    B, C, F, H, W = latents.shape
    return latents.permute(0, 2, 1, 3, 4).reshape(B * F, C, H, W)  # (B, F, C, H, W) -> (B*F, C, H, W)


def batch_to_frames(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B*F, C, H, W) -> (B, C, F, H, W)``, the inverse of :func:`frames_to_batch`.

    >>> z = torch.randn(2, 16, 5, 4, 6)
    >>> torch.equal(batch_to_frames(frames_to_batch(z), batch=2), z)
    True
    """
    _check("x", x, 4, "(B*F, C, H, W)")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1 or x.shape[0] % batch:
        raise ValueError(
            f"batch must be a whole number >= 1 that divides the leading axis {x.shape[0]} (B*F), "
            f"e.g. batch=1; got {batch!r}"
        )
    BF, C, H, W = x.shape
    return x.reshape(batch, BF // batch, C, H, W).permute(0, 2, 1, 3, 4)  # (B, F, C, H, W) -> (B, C, F, H, W)
