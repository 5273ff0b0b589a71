r"""Patches: how a DiT cuts a latent into tokens and puts its prediction back.

A diffusion transformer (DiT) cuts the latent ``(B, C, H, W)`` into
:math:`p \times p` patches, :math:`N = (H/p)(W/p)` tokens, and puts them back at
the end, so its prediction has the latent's shape.
"""

from __future__ import annotations

import torch

from infralens.core.args import multiple_of, nearest_text, positive_int


def _check_latents(latents: torch.Tensor, patch_size: int) -> tuple[int, int, int, int]:
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"latents must be (B, C, H, W), e.g. torch.randn(1, 4, 16, 16); got {got}")
    B, C, H, W = latents.shape
    for name, size in (("latent height", H), ("latent width", W)):
        if size % patch_size:
            near = nearest_text(size, lambda v: v % patch_size == 0)
            raise ValueError(f"{name}={size} is not a multiple of patch_size={patch_size}; {near}")
    return B, C, H, W


def patchify(latents: torch.Tensor, patch_size: int = 2) -> torch.Tensor:
    r"""Latent ``(B, C, H, W)`` to tokens ``(B, N, C p^2)``, :math:`N = (H/p)(W/p)`.

    Tokens are the :math:`p \times p` patches in row-major order (patch row,
    then patch column); the features of a token are ordered channel, row in
    the patch, column in the patch, the order of a patch-embedding
    convolution's weight ``(D, C, p, p)``. With :math:`p = 2` this is
    :func:`~infralens.diffusion.flux_pack`.

    :param latents: ``(B, C, H, W)``, :math:`H` and :math:`W` multiples of :math:`p`.
    :param patch_size: :math:`p`.
    :returns: ``(B, N, C p^2)``.

    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> patchify(x, 2)[0, :2].tolist()       # the first two 2x2 patches
    [[0.0, 1.0, 4.0, 5.0], [2.0, 3.0, 6.0, 7.0]]
    """
    p = positive_int("patch_size", patch_size, example=2)
    B, C, H, W = _check_latents(latents, p)
    x = latents.reshape(B, C, H // p, p, W // p, p)  # (B, C, H/p, p, W/p, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C p^2)


def unpatchify(tokens: torch.Tensor, height: int, width: int, patch_size: int = 2) -> torch.Tensor:
    r"""Tokens ``(B, N, C p^2)`` back to the latent ``(B, C, H, W)``: the inverse of :func:`patchify`.

    :param tokens: ``(B, N, C p^2)`` with :math:`N = (H/p)(W/p)`.
    :param height: :math:`H` of the latent (not of the image).
    :param width: :math:`W` of the latent.
    :param patch_size: :math:`p`.
    :returns: ``(B, C, H, W)``.

    >>> x = torch.randn(2, 4, 6, 8)
    >>> torch.equal(unpatchify(patchify(x, 2), 6, 8, 2), x)
    True
    """
    p = positive_int("patch_size", patch_size, example=2)
    h, w = positive_int("height", height, example=16), positive_int("width", width, example=16)
    _check_latents(torch.empty(1, 1, h, w), p)
    N = (h // p) * (w // p)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tokens.shape[1] != N or tokens.shape[2] % (p * p):
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(
            f"tokens must be (B, N, C * {p * p}) with N = ({h}/{p}) * ({w}/{p}) = {N}, "
            f"e.g. torch.randn(1, {N}, {4 * p * p}); got {got}"
        )
    B, C = tokens.shape[0], tokens.shape[2] // (p * p)
    x = tokens.reshape(B, h // p, w // p, C, p, p)  # (B, H/p, W/p, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, H/p, p, W/p, p)
    return x.reshape(B, C, h, w)  # (B, C, H, W)


def patch_token_count(height: int, width: int, *, spatial_factor: int = 8, patch_size: int = 2) -> int:
    r"""Tokens a DiT sees for an image: :math:`N = \frac{H}{s p} \cdot \frac{W}{s p}`.

    :param height: :math:`H` in pixels, a multiple of :math:`s p`.
    :param width: :math:`W` in pixels, a multiple of :math:`s p`.
    :param spatial_factor: :math:`s`, the VAE's (8 for SD3 and FLUX.1).
    :param patch_size: :math:`p`, the transformer's (2 for SD3, PixArt and FLUX.1).
    :returns: :math:`N`.

    >>> patch_token_count(1024, 1024)              # SD3 at 1024x1024
    4096
    """
    s = positive_int("spatial_factor", spatial_factor, example=8)
    p = positive_int("patch_size", patch_size, example=2)
    why = f"spatial_factor * patch_size = {s} * {p}"
    h = multiple_of("height", height, s * p, why=why)
    w = multiple_of("width", width, s * p, why=why)
    return (h // (s * p)) * (w // (s * p))
