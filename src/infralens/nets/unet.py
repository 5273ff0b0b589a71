r"""A tiny UNet-shaped denoiser whose skips and middle block accept additional residuals (ControlNet's target).

The encoder keeps one skip feature per resolution and a middle feature at the
lowest; the decoder upsamples and adds the skips back. Residuals, when given,
are added to the skips and the middle feature before the decoder reads them,
as in diffusers' ``UNet2DConditionModel`` (``down_block_additional_residuals``,
``mid_block_additional_residual``). A ControlNet
(:class:`~infralens.adapters.TinyControlNet`) is a trainable copy of
:class:`UNetEncoder`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from infralens.core import nearest_text, positive_int, seeded


def _check_size(num_blocks: int, height: int, width: int) -> None:
    f = 2**num_blocks
    for name, size in (("height", height), ("width", width)):
        if size % f or size < f:
            near = nearest_text(size, lambda v, f=f: v % f == 0, minimum=f)
            raise ValueError(
                f"latent {name} must be a positive multiple of 2**num_blocks = {f} (each block halves it); "
                f"got {size}, {near}"
            )


def check_unet_input(sample: object, timestep: object, in_channels: int, num_blocks: int) -> torch.Tensor:
    """Validate a latent ``(B, C, H, W)`` and its timestep; return the timestep as ``(B,)``."""
    if not isinstance(sample, torch.Tensor) or sample.ndim != 4 or sample.shape[1] != in_channels:
        shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
        raise ValueError(
            f"sample must be a latent (B, {in_channels}, H, W), e.g. torch.randn(1, {in_channels}, 16, 16); got {shape}"
        )
    _check_size(num_blocks, sample.shape[2], sample.shape[3])
    B = sample.shape[0]
    if not isinstance(timestep, torch.Tensor) or timestep.shape not in ((), (B,)):
        shape = tuple(timestep.shape) if isinstance(timestep, torch.Tensor) else type(timestep).__name__
        raise ValueError(f"timestep must be a tensor of shape () or (B,) = ({B},), e.g. torch.tensor(500); got {shape}")
    return timestep.expand(B)


class UNetEncoder(nn.Module):
    """conv_in, a timestep shift, ``num_blocks`` stride-2 blocks and a middle block: the skips and the mid features."""

    def __init__(self, in_channels: int, width: int, num_blocks: int):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        self.time_proj = nn.Linear(1, width)
        self.down_blocks = nn.ModuleList(nn.Conv2d(width, width, 3, stride=2, padding=1) for _ in range(num_blocks))
        self.mid_block = nn.Conv2d(width, width, 3, padding=1)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, added: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        B = sample.shape[0]
        temb = self.time_proj(timestep.float().reshape(B, 1) / 1000)[:, :, None, None]  # (B, w, 1, 1)
        h = self.conv_in(sample) + temb  # (B, w, H, W)
        if added is not None:
            h = h + added  # the encoded control image joins here (ControlNet's copy only)
        skips = [h]
        for block in self.down_blocks:
            h = nn.functional.silu(block(h)) + temb  # (B, w, H / 2^k, W / 2^k)
            skips.append(h)
        return skips, nn.functional.silu(self.mid_block(h))  # skips k = 0..n, mid (B, w, H / 2^n, W / 2^n)


class TinyUNet(nn.Module):
    r"""A tiny UNet-shaped denoiser whose skips and middle block accept additional residuals.

    ``forward(sample (B, C, H, W), timestep (B,), down_block_additional_residuals=None,
    mid_block_additional_residual=None) -> (B, C, H, W)``. The encoder keeps ``num_blocks + 1``
    skip features, skip :math:`k` of shape ``(B, width, H / 2^k, W / 2^k)``, and a middle
    feature at the lowest resolution; the decoder upsamples and adds the skips back. Residuals,
    when given, are added to the skips and the middle feature before the decoder reads them,
    as in diffusers' ``UNet2DConditionModel``. ``H`` and ``W`` must be multiples of
    :math:`2^\text{num\_blocks}`.

    :param in_channels: latent channels :math:`C`.
    :param width: feature channels of every block.
    :param num_blocks: down-sampling blocks, each halving ``H`` and ``W``.
    :param seed: fixes the random weights; the global generator is left untouched.

    >>> unet = TinyUNet(in_channels=4, width=8, num_blocks=2)
    >>> unet(torch.randn(2, 4, 16, 16), torch.tensor([999, 500])).shape
    torch.Size([2, 4, 16, 16])
    >>> unet.skip_shapes(batch=2, height=16, width=16)
    [(2, 8, 16, 16), (2, 8, 8, 8), (2, 8, 4, 4)]
    """

    def __init__(self, in_channels: int = 4, width: int = 8, num_blocks: int = 2, seed: int = 0):
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels, example=4)
        self.width = positive_int("width", width, example=8)
        self.num_blocks = positive_int("num_blocks", num_blocks, example=2)
        with seeded(seed):
            self.encoder = UNetEncoder(self.in_channels, self.width, self.num_blocks)
            self.up_blocks = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(self.num_blocks))
            self.conv_out = nn.Conv2d(width, in_channels, 3, padding=1)
        self.eval()

    def skip_shapes(self, *, batch: int, height: int, width: int) -> list[tuple[int, ...]]:
        """Shapes of the skip features (and so of the down residuals) for a latent of ``height`` x ``width``."""
        _check_size(self.num_blocks, height, width)
        return [(batch, self.width, height >> k, width >> k) for k in range(self.num_blocks + 1)]

    def mid_shape(self, *, batch: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of the middle feature (and of the mid residual)."""
        return self.skip_shapes(batch=batch, height=height, width=width)[-1]

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        timestep = check_unet_input(sample, timestep, self.in_channels, self.num_blocks)  # (B,)
        B, _, H, W = sample.shape
        skips, mid = self.encoder(sample, timestep)
        if (down_block_additional_residuals is None) != (mid_block_additional_residual is None):
            raise ValueError(
                "give both down_block_additional_residuals and mid_block_additional_residual (a ControlNet returns "
                "both), or neither"
            )
        if down_block_additional_residuals is not None:
            expected = self.skip_shapes(batch=B, height=H, width=W)
            got = [tuple(r.shape) for r in down_block_additional_residuals]
            if got != expected or tuple(mid_block_additional_residual.shape) != expected[-1]:
                raise ValueError(
                    f"down_block_additional_residuals must have the skip shapes {expected} and "
                    f"mid_block_additional_residual the shape {expected[-1]}; got {got} and "
                    f"{tuple(mid_block_additional_residual.shape)}"
                )
            # h_k <- h_k + residual_k, h_mid <- h_mid + residual_mid
            skips = [h + r for h, r in zip(skips, down_block_additional_residuals, strict=True)]
            mid = mid + mid_block_additional_residual
        h = mid  # (B, w, H / 2^n, W / 2^n)
        for k in range(self.num_blocks, 0, -1):
            h = nn.functional.silu(self.up_blocks[k - 1](h + skips[k]))  # (B, w, H / 2^k, W / 2^k)
            h = nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")  # (B, w, H / 2^(k-1), ...)
        return self.conv_out(h + skips[0])  # (B, C, H, W)
