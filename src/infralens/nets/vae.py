r"""A tiny image VAE with the contract of diffusers' ``AutoencoderKL``: pixels to a Gaussian over latents and back.

The encoder maps an image ``(B, 3, H, W)`` in :math:`[-1, 1]` to :math:`2C`
channels on a grid :math:`s` times smaller, read as the mean and the log-variance
of a diagonal Gaussian (the *posterior*, ``latent_dist`` in diffusers). A latent
:math:`z` ``(B, C, H/s, W/s)`` is its mean (``mode()``) or a draw from it
(``sample()``); the decoder maps :math:`z` back to ``(B, 3, H, W)``.

The spatial factor comes from the number of blocks exactly as diffusers'
pipelines compute it: every block but the last halves height and width, so

.. math:: s = 2^{\,\text{len(block\_out\_channels)} - 1}

and the default four blocks give :math:`s = 8`, the factor of the Stable
Diffusion, SDXL, SD3 and FLUX.1 VAEs. Weights are random and fixed by a seed;
nothing is downloaded, so shapes, the posterior and the arithmetic are real and
the decoded pixels are not a reconstruction.

Stable signature (other labs load this class): ``TinyAutoencoderKL(latent_channels=4,
block_out_channels=(8, 16, 32, 32), seed=0)``, ``encode(images) -> DiagonalGaussian``,
``decode(latents)``, attribute ``spatial_factor``.
"""

from __future__ import annotations

import torch
from torch import nn

from infralens.core import positive_int, seeded


class DiagonalGaussian:
    r"""The encoder's posterior: a Gaussian per latent element, :math:`\mathcal N(\mu, \sigma^2)`.

    Built from the encoder's :math:`2C` output channels: the first :math:`C` are
    :math:`\mu`, the last :math:`C` are :math:`\log\sigma^2`, clamped to
    :math:`[-30, 20]` as diffusers' ``DiagonalGaussianDistribution`` does.

    :param moments: ``(B, 2C, h, w)``.

    >>> post = DiagonalGaussian(torch.zeros(1, 8, 2, 2))   # mu = 0, log var = 0
    >>> post.mean.shape, post.std.unique().tolist()
    (torch.Size([1, 4, 2, 2]), [1.0])
    """

    def __init__(self, moments: torch.Tensor):
        if not isinstance(moments, torch.Tensor) or moments.ndim != 4 or moments.shape[1] % 2:
            got = tuple(moments.shape) if isinstance(moments, torch.Tensor) else type(moments).__name__
            raise ValueError(
                f"moments must be (B, 2C, h, w), mean then log-variance on the channel axis, "
                f"e.g. torch.zeros(1, 8, 2, 2); got {got}"
            )
        self.mean, logvar = moments.chunk(2, dim=1)  # (B, C, h, w) each
        self.logvar = logvar.clamp(-30.0, 20.0)  # (B, C, h, w)
        self.std = torch.exp(0.5 * self.logvar)  # sigma = exp(log(sigma^2) / 2)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""One draw :math:`z = \mu + \sigma \odot \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I)`.

        :param generator: makes the draw repeatable (the noise is drawn with the
            mean's shape, dtype and device, as diffusers does).
        :returns: :math:`z`, ``(B, C, h, w)``.
        """
        eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * eps  # (B, C, h, w)

    def mode(self) -> torch.Tensor:
        r""":math:`\mu`, the most likely latent (what ``sample_mode="argmax"`` returns in diffusers)."""
        return self.mean


class TinyAutoencoderKL(nn.Module):
    r"""``encode (B, 3, H, W) -> DiagonalGaussian over (B, C, H/s, W/s)``; ``decode`` maps latents back to pixels.

    Encoder: a 3x3 conv in, then one conv per block with a stride-2 conv after
    every block but the last, a channel norm, and a 3x3 conv to :math:`2C`
    channels. Decoder: the mirror image, with nearest-neighbour upsampling
    where the encoder downsampled. The decoder is not clamped; turning its
    output into an image (``(x + 1) / 2`` clamped to :math:`[0, 1]`) is the
    image processor's job, as in diffusers.

    :param latent_channels: :math:`C` (4 for SD and SDXL, 16 for SD3 and FLUX.1).
    :param block_out_channels: channels per block; its length sets :math:`s`.
    :param seed: seeds the random weights, so every machine builds the same module.

    >>> vae = TinyAutoencoderKL()
    >>> image = torch.rand(1, 3, 64, 96) * 2 - 1          # (B, 3, H, W)
    >>> post = vae.encode(image)
    >>> post.mean.shape                                   # (B, C, H/8, W/8)
    torch.Size([1, 4, 8, 12])
    >>> vae.decode(post.mode()).shape
    torch.Size([1, 3, 64, 96])
    """

    def __init__(
        self,
        latent_channels: int = 4,
        block_out_channels: tuple[int, ...] = (8, 16, 32, 32),
        seed: int = 0,
    ):
        super().__init__()
        self.latent_channels = C = positive_int("latent_channels", latent_channels, example=4)
        if not isinstance(block_out_channels, tuple | list) or not block_out_channels:
            raise ValueError(
                f"block_out_channels must be a non-empty tuple of channel counts, e.g. (8, 16, 32, 32); "
                f"got {block_out_channels!r}"
            )
        widths = tuple(positive_int("block_out_channels[i]", w, example=8) for w in block_out_channels)
        self.block_out_channels = widths
        with seeded(seed):  # the same weights on every machine
            self.encoder = self._encoder(widths, C)
            self.decoder = self._decoder(widths, C)
        self.eval()

    @property
    def spatial_factor(self) -> int:
        r""":math:`s = 2^{\text{len(block\_out\_channels)} - 1}`: pixels per latent cell along height and width.

        >>> TinyAutoencoderKL().spatial_factor, TinyAutoencoderKL(block_out_channels=(8, 8)).spatial_factor
        (8, 2)
        """
        return 2 ** (len(self.block_out_channels) - 1)

    @staticmethod
    def _encoder(widths: tuple[int, ...], C: int) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
        prev = widths[0]
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(prev, w, 3, padding=1), nn.SiLU()]
            if i < len(widths) - 1:  # every block but the last halves H and W
                layers.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            prev = w
        layers += [nn.GroupNorm(1, prev), nn.SiLU(), nn.Conv2d(prev, 2 * C, 3, padding=1)]  # mean and log-variance
        return nn.Sequential(*layers)

    @staticmethod
    def _decoder(widths: tuple[int, ...], C: int) -> nn.Sequential:
        rev = widths[::-1]
        layers: list[nn.Module] = [nn.Conv2d(C, rev[0], 3, padding=1)]
        prev = rev[0]
        for i, w in enumerate(rev):
            layers += [nn.Conv2d(prev, w, 3, padding=1), nn.SiLU()]
            if i < len(rev) - 1:  # mirror of the encoder: double H and W
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w, 3, padding=1)]
            prev = w
        layers += [nn.GroupNorm(1, prev), nn.SiLU(), nn.Conv2d(prev, 3, 3, padding=1)]
        return nn.Sequential(*layers)

    def encode(self, images: torch.Tensor) -> DiagonalGaussian:
        r"""Images ``(B, 3, H, W)`` to the posterior over latents ``(B, C, H/s, W/s)``.

        :param images: pixels in :math:`[-1, 1]`; :math:`H` and :math:`W` multiples of :math:`s`.
        :returns: the posterior; ``.sample()`` or ``.mode()`` gives the raw latent
            :math:`z`, not yet scaled for the denoiser.
        """
        self._check_images(images)
        with torch.no_grad():
            return DiagonalGaussian(self.encoder(images))  # (B, 2C, H/s, W/s) -> mean, log-variance

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        r"""Raw latents ``(B, C, h, w)`` to images ``(B, 3, s h, s w)``.

        :param latents: :math:`z` after undoing the scaling constants.
        :returns: pixels, nominally in :math:`[-1, 1]` (not clamped).
        """
        C = self.latent_channels
        if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or latents.shape[1] != C:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(
                f"latents must be (B, C, h, w) with C = latent_channels = {C}, e.g. torch.randn(1, {C}, 8, 8); "
                f"got {got}"
            )
        with torch.no_grad():
            return self.decoder(latents)  # (B, 3, s*h, s*w)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``decode(encode(images).mode())``: same shape as ``images``."""
        return self.decode(self.encode(images).mode())

    def _check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be (B, 3, H, W), e.g. torch.rand(1, 3, 64, 64) * 2 - 1; got {got}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point pixels in [-1, 1], e.g. torch.float32; got {images.dtype}")
        s = self.spatial_factor
        for name, size in (("height", images.shape[2]), ("width", images.shape[3])):
            if size % s or size == 0:
                lo = size // s * s
                near = f"{lo} or {lo + s}" if lo else f"{s}"
                raise ValueError(
                    f"{name}={size} is not a multiple of {s}, the spatial factor "
                    f"(2 ** (len(block_out_channels) - 1)); nearest valid: {near}"
                )


class TinyConvDecoder(nn.Module):
    r"""A purely convolutional decoder: 3x3 convolutions, SiLU and nearest 2x upsampling, no norm, no attention.

    ``(B, C, H, W) -> (B, 3, sH, sW)`` with :math:`s = 2^{\text{upsamples}}`. With
    no normalisation or attention every output pixel sees only a bounded
    neighbourhood of latent cells, :attr:`receptive_radius`.

    >>> dec = TinyConvDecoder(latent_channels=4, width=8, upsamples=2)
    >>> dec(torch.randn(1, 4, 6, 10)).shape, dec.scale, dec.receptive_radius
    (torch.Size([1, 3, 24, 40]), 4, 2)
    """

    def __init__(
        self, latent_channels: int = 4, width: int = 32, upsamples: int = 2, out_channels: int = 3, seed: int = 0
    ):
        super().__init__()
        c_in = positive_int("latent_channels", latent_channels, example=4)
        w = positive_int("width", width, example=32)
        c_out = positive_int("out_channels", out_channels, example=3)
        self.upsamples = positive_int("upsamples", upsamples, example=2)
        self.scale = 2**self.upsamples
        with seeded(seed):  # the same weights on every machine
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
