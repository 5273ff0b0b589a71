r"""ControlNet-style conditioning: a trainable copy of the denoiser's encoder adds residuals to its skips.

A control image (edges, depth, pose) is encoded by its own small network to the
latent grid, added to the copy's first features, and run through the copy of
the encoder. One zero-initialised :math:`1 \times 1` convolution per skip
connection (and one for the middle block) turns the copy's features into
residuals, which are scaled and added to the frozen denoiser's skips:

.. math:: h_k \leftarrow h_k + \lambda\, Z_k\big(c_k\big), \qquad
   h_\text{mid} \leftarrow h_\text{mid} + \lambda\, Z_\text{mid}\big(c_\text{mid}\big)

with :math:`c_k` the copy's features, :math:`Z_k` the zero convolutions and
:math:`\lambda` = ``conditioning_scale``. Because every :math:`Z_k` starts at
zero, a freshly attached control adds exact zeros. Several controls add their
scaled residuals (:class:`MultiControlNet`).

Names follow diffusers' ``ControlNetModel`` and ``UNet2DConditionModel``:
``controlnet_cond``, ``conditioning_scale``, ``controlnet_cond_embedding``,
``controlnet_down_blocks``, ``controlnet_mid_block``,
``down_block_additional_residuals`` and ``mid_block_additional_residual``.
The models here are tiny and randomly initialised (fixed by a seed); they have
the wiring of the real ones, not their layers.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence

import torch
from torch import nn

from infralens.core import positive_int, seeded
from infralens.nets import TinyUNet, UNetEncoder, check_unet_input


def _scale(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, e.g. {name}=1.0; got {value!r}")
    return float(value)


class ControlNetConditioningEmbedding(nn.Module):
    r"""Encodes a control image to the latent grid: ``(B, c, fH, fW) -> (B, width, H, W)``, last conv zero-initialised.

    :math:`\log_2 f` stride-2 convolutions bring the pixel-space control image down to the
    latent's resolution (:math:`f = 8` for Stable Diffusion's VAE); the last convolution starts
    at zero, like diffusers' ``ControlNetConditioningEmbedding.conv_out``.
    """

    def __init__(self, conditioning_channels: int, width: int, factor: int):
        super().__init__()
        steps = int(math.log2(factor))
        self.conv_in = nn.Conv2d(conditioning_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(width, width, 3, stride=2, padding=1) for _ in range(steps))
        self.conv_out = _zero(nn.Conv2d(width, width, 3, padding=1))

    def forward(self, conditioning: torch.Tensor) -> torch.Tensor:
        h = nn.functional.silu(self.conv_in(conditioning))  # (B, w, fH, fW)
        for block in self.blocks:
            h = nn.functional.silu(block(h))  # halves H and W each time, down to (B, w, H, W)
        return self.conv_out(h)  # (B, w, H, W), zeros at initialisation


def _zero(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero (diffusers calls this ``zero_module``)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class TinyControlNet(nn.Module):
    r"""A trainable copy of a :class:`~infralens.nets.TinyUNet`'s encoder that turns a control image into residuals.

    ``forward(sample, timestep, controlnet_cond (B, c, fH, fW), conditioning_scale=1.0) ->
    (down_block_res_samples, mid_block_res_sample)``, shapes as :meth:`~infralens.nets.TinyUNet.skip_shapes`
    and :meth:`~infralens.nets.TinyUNet.mid_shape`. The residuals are

    .. math:: r_k = \lambda\, Z_k(c_k), \qquad r_\text{mid} = \lambda\, Z_\text{mid}(c_\text{mid})

    with :math:`Z` the zero-initialised :math:`1 \times 1` convolutions ``controlnet_down_blocks`` and
    ``controlnet_mid_block`` and :math:`\lambda` = ``conditioning_scale``: all zero until trained.
    Build it with :meth:`from_denoiser`, which copies the denoiser's encoder weights, as
    diffusers' ``ControlNetModel.from_unet`` does.

    :param in_channels: latent channels of the denoiser.
    :param width: feature channels, the denoiser's.
    :param num_blocks: the denoiser's down-sampling blocks.
    :param conditioning_channels: channels of the control image (3 for RGB edges or depth maps).
    :param conditioning_factor: pixels per latent cell along each axis, a power of 2 (the VAE's 8).
    :param seed: fixes the random weights of the control image encoder.

    >>> unet = TinyUNet(in_channels=4, width=8, num_blocks=2)
    >>> controlnet = TinyControlNet.from_denoiser(unet)
    >>> down, mid = controlnet(torch.randn(1, 4, 16, 16), torch.tensor([500]),
    ...                        torch.rand(1, 3, 128, 128))
    >>> [tuple(r.shape) for r in down], tuple(mid.shape)
    ([(1, 8, 16, 16), (1, 8, 8, 8), (1, 8, 4, 4)], (1, 8, 4, 4))
    >>> all(torch.count_nonzero(r) == 0 for r in [*down, mid])  # a new control adds zeros
    True
    """

    def __init__(
        self,
        in_channels: int = 4,
        width: int = 8,
        num_blocks: int = 2,
        conditioning_channels: int = 3,
        conditioning_factor: int = 8,
        seed: int = 1,
    ):
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels, example=4)
        self.width = positive_int("width", width, example=8)
        self.num_blocks = positive_int("num_blocks", num_blocks, example=2)
        self.conditioning_channels = positive_int("conditioning_channels", conditioning_channels, example=3)
        f = positive_int("conditioning_factor", conditioning_factor, example=8)
        if f & (f - 1):
            raise ValueError(
                f"conditioning_factor must be a power of 2 (stride-2 convolutions reach it), e.g. "
                f"conditioning_factor=8; got {f}"
            )
        self.conditioning_factor = f
        with seeded(seed):
            self.controlnet_cond_embedding = ControlNetConditioningEmbedding(self.conditioning_channels, width, f)
            self.encoder = UNetEncoder(self.in_channels, self.width, self.num_blocks)
            self.controlnet_down_blocks = nn.ModuleList(
                _zero(nn.Conv2d(width, width, 1)) for _ in range(self.num_blocks + 1)
            )
            self.controlnet_mid_block = _zero(nn.Conv2d(width, width, 1))
        self.eval()

    @classmethod
    def from_denoiser(
        cls, denoiser: nn.Module, conditioning_channels: int = 3, conditioning_factor: int = 8, seed: int = 1
    ) -> TinyControlNet:
        """A control branch whose encoder starts as a copy of ``denoiser``'s (a :class:`~infralens.nets.TinyUNet`)."""
        if not isinstance(denoiser, TinyUNet):
            raise ValueError(
                "denoiser must be a TinyUNet, e.g. TinyControlNet.from_denoiser(TinyUNet()); "
                f"got {type(denoiser).__name__}"
            )
        net = cls(
            denoiser.in_channels,
            denoiser.width,
            denoiser.num_blocks,
            conditioning_channels=conditioning_channels,
            conditioning_factor=conditioning_factor,
            seed=seed,
        )
        net.encoder = copy.deepcopy(denoiser.encoder)  # trainable copy; the denoiser stays frozen
        net.encoder.requires_grad_(True)
        return net

    def zero_modules(self) -> list[nn.Module]:
        """The modules initialised to zero: the control embedding's last conv, every down zero conv, the mid one.

        Training moves them away from zero; until then the branch adds nothing.
        """
        return [self.controlnet_cond_embedding.conv_out, *self.controlnet_down_blocks, self.controlnet_mid_block]

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        scale = _scale("conditioning_scale", conditioning_scale)
        timestep = check_unet_input(sample, timestep, self.in_channels, self.num_blocks)  # (B,)
        B, _, H, W = sample.shape
        f, c = self.conditioning_factor, self.conditioning_channels
        want = (B, c, f * H, f * W)
        if not isinstance(controlnet_cond, torch.Tensor) or tuple(controlnet_cond.shape) != want:
            shape = tuple(controlnet_cond.shape) if isinstance(controlnet_cond, torch.Tensor) else "not a tensor"
            raise ValueError(
                f"controlnet_cond must be the control image in pixels, (B, {c}, {f}*H, {f}*W) = {want} for a "
                f"latent of {tuple(sample.shape)}; got {shape}"
            )
        cond = self.controlnet_cond_embedding(controlnet_cond)  # (B, w, H, W): encoded on its own
        skips, mid = self.encoder(sample, timestep, added=cond)  # the copy sees latent + control
        # r_k = lambda * Z_k(c_k), r_mid = lambda * Z_mid(c_mid)
        down = [scale * zero(h) for zero, h in zip(self.controlnet_down_blocks, skips, strict=True)]
        return down, scale * self.controlnet_mid_block(mid)


class MultiControlNet(nn.Module):
    r"""Several control branches at once: their scaled residuals are summed per skip.

    .. math:: r_k = \sum_j \lambda_j\, Z^{(j)}_k\big(c^{(j)}_k\big)

    ``forward(sample, timestep, controlnet_cond: list, conditioning_scale: list) ->
    (down_block_res_samples, mid_block_res_sample)``: one control image and one scale per net,
    in order, like diffusers' ``MultiControlNetModel``.

    :param nets: the :class:`TinyControlNet` branches, all built for the same denoiser.
    """

    def __init__(self, nets: Sequence[TinyControlNet]):
        super().__init__()
        items = list(nets) if isinstance(nets, Sequence | nn.ModuleList) else None
        if not items or not all(isinstance(n, TinyControlNet) for n in items):
            got = [type(n).__name__ for n in items] if items is not None else type(nets).__name__
            raise ValueError(
                f"nets must be a non-empty list of TinyControlNet, e.g. MultiControlNet([canny, depth]); got {got}"
            )
        nets = items
        self.nets = nn.ModuleList(nets)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        controlnet_cond: Sequence[torch.Tensor],
        conditioning_scale: Sequence[float],
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        n = len(self.nets)
        for name, value in (("controlnet_cond", controlnet_cond), ("conditioning_scale", conditioning_scale)):
            if not isinstance(value, Sequence) or len(value) != n:
                got = f"{len(value)} items" if isinstance(value, Sequence) else type(value).__name__
                raise ValueError(f"{name} must be a list with one entry per net ({n}), in the nets' order; got {got}")
        down, mid = None, None
        for net, image, scale in zip(self.nets, controlnet_cond, conditioning_scale, strict=True):
            d, m = net(sample, timestep, image, conditioning_scale=scale)
            # r_k = sum_j lambda_j * Z_k^(j)(c_k^(j))
            down = d if down is None else [a + b for a, b in zip(down, d, strict=True)]
            mid = m if mid is None else mid + m
        return down, mid
