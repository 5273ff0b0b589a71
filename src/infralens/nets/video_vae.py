r"""A tiny causal video VAE with the contract of Wan's: 8x in space, 4x in time, the first frame alone.

``TinyCausalVideoVAE.encode`` maps a video ``(B, 3, F, H, W)`` with
:math:`F = 1 + 4k` frames to a latent ``(B, C, F', H/8, W/8)`` with
:math:`F' = 1 + (F - 1)/4`; ``decode`` maps it back to ``(B, 3, F, H, W)``.
Every convolution is causal in time (:class:`CausalConv3d`: its time padding is
on the past side only) and every normalisation is per position, so latent frame
:math:`j` depends on video frames up to :math:`4j` and nothing later.

That is what makes chunking possible. Like Wan's VAE (diffusers'
``AutoencoderKLWan._encode``, DiffSynth-Studio's ``VideoVAE_.encode``), the
encoder can run on frame 0 and then on groups of four frames, carrying a small
cache per convolution: the frames the next window still needs. The decoder can
run one latent frame at a time the same way. Chunked and whole-sequence passes
compute the same function; they agree up to float rounding (the convolution
kernels may sum in a different order for a different number of frames).

Weights are random and fixed by a seed; nothing is downloaded. The shapes,
the causality and the chunking are real, the pixels are not a reconstruction.

Stable signature (other labs load this class): ``TinyCausalVideoVAE(latent_channels=16,
width=8, seed=0)``, ``encode(video, *, chunked=True)``, ``decode(latents, *, chunked=True)``,
class attributes ``spatial_factor = 8`` and ``temporal_factor = 4``.
"""

from __future__ import annotations

import torch
from torch import nn

from infralens.core import positive_int, seeded

Cache = dict[nn.Module, torch.Tensor]
"""Per-convolution carry between chunks: the input frames the next window still needs."""


def channel_rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    r"""Normalise over channels at each position: :math:`x / \sqrt{\operatorname{mean}_c x^2 + \varepsilon}`.

    A per-position norm (Wan's VAE uses an RMS norm over channels too) keeps the
    network causal; a GroupNorm over ``(C, F, H, W)`` would let later frames
    change earlier latents.

    :param x: ``(B, C, F, H, W)``.
    :param eps: :math:`\varepsilon`.
    :returns: same shape.

    >>> x = torch.randn(1, 8, 3, 4, 4)
    >>> y = channel_rms_norm(x)
    >>> torch.allclose(y.pow(2).mean(dim=1), torch.ones(1, 3, 4, 4), atol=1e-4)
    True
    """
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)  # (B, C, F, H, W)


class CausalConv3d(nn.Conv3d):
    r"""A 3-D convolution whose output frame reads only input frames at or before it.

    Time gets :math:`k_t - 1` frames of padding on the *past* side only (zeros at
    the start of a video); height and width are padded symmetrically. With a
    ``cache`` the past padding of a later chunk is the tail of the previous
    chunk instead of zeros, so running chunk by chunk equals one pass.

    :param in_channels: input channels.
    :param out_channels: output channels.
    :param kernel_size: :math:`(k_t, k_h, k_w)`.
    :param stride: ``(s_t, s_h, s_w)``.

    >>> conv = CausalConv3d(2, 2, (3, 1, 1))
    >>> x = torch.randn(1, 2, 5, 1, 1)
    >>> y = conv(x)
    >>> x2 = x.clone()
    >>> x2[:, :, 3:] = 0.0                # change the future only
    >>> torch.equal(conv(x2)[:, :, :3], y[:, :, :3])
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int, int] = (3, 3, 3),
        stride: tuple[int, int, int] = (1, 1, 1),
    ):
        kt, kh, kw = kernel_size
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, kh // 2, kw // 2))
        self.time_pad = kt - 1

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        past = None if cache is None else cache.get(self)
        if past is None:  # the start of the video: zeros before frame 0
            past = x.new_zeros(*x.shape[:2], self.time_pad, *x.shape[3:])  # (B, C_in, k_t - 1, H, W)
        x = torch.cat([past, x], dim=2)  # (B, C_in, P + F, H, W)
        y = super().forward(x)  # (B, C_out, F_out, H_out, W_out)
        if cache is not None:  # keep what the next window still needs (nothing when stride == kernel)
            cache[self] = x[:, :, y.shape[2] * self.stride[0] :]
        return y


class _TimeUpsample(nn.Module):
    """Doubles frames, except the very first one: ``F -> 2F - 1`` over a whole video."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = CausalConv3d(channels, 2 * channels)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        first = cache is None or self.conv not in cache  # does this call hold frame 0?
        B, C, F, H, W = x.shape
        y = self.conv(x, cache)  # (B, 2C, F, H, W): two frames' worth of channels
        y = y.reshape(B, 2, C, F, H, W).permute(0, 2, 3, 1, 4, 5)  # (B, C, F, 2, H, W)
        y = y.reshape(B, C, 2 * F, H, W)  # (B, C, 2F, H, W): frame f -> 2f, 2f + 1
        return y[:, :, 1:] if first else y  # frame 0 stays one frame: (B, C, 2F - 1, H, W)


class TinyCausalVideoVAE(nn.Module):
    r"""``encode (B, 3, F, H, W) -> (B, C, F', H/8, W/8)`` and ``decode`` back, with :math:`F' = 1 + (F - 1)/4`.

    Encoder: a causal conv, three stride-2 spatial stages (the last two also
    halve time with a causal stride-2 conv, which keeps frame 0 alone), a head
    with :math:`2C` channels (mean and log-variance). Decoder: the mirror image,
    doubling time in two stages except for frame 0. Videos are pixels in
    :math:`[-1, 1]`; the decoder clamps to that range as Wan's does.

    :param latent_channels: :math:`C` (16 as in Wan 2.1).
    :param width: channels of the first stage (the second and third have twice as many).
    :param seed: seeds the random weights, so every machine builds the same module.

    >>> vae = TinyCausalVideoVAE()
    >>> video = torch.rand(1, 3, 9, 32, 48) * 2 - 1     # (B, 3, F, H, W)
    >>> z = vae.encode(video)
    >>> z.shape                                          # (B, C, 1 + 8/4, H/8, W/8)
    torch.Size([1, 16, 3, 4, 6])
    >>> vae.decode(z).shape
    torch.Size([1, 3, 9, 32, 48])
    """

    spatial_factor = 8
    """Pixels per latent cell along height and width."""
    temporal_factor = 4
    """Video frames per latent frame after the first."""

    def __init__(self, latent_channels: int = 16, width: int = 8, seed: int = 0):
        super().__init__()
        self.latent_channels = C = positive_int("latent_channels", latent_channels, example=16)
        w = positive_int("width", width, example=8)
        with seeded(seed):  # the same weights on every machine
            self.enc_in = CausalConv3d(3, w)
            self.enc_space = nn.ModuleList(
                [CausalConv3d(a, b, stride=(1, 2, 2)) for a, b in ((w, w), (w, 2 * w), (2 * w, 2 * w))]
            )
            self.enc_time = nn.ModuleList(
                [nn.Identity()] + [CausalConv3d(2 * w, 2 * w, (2, 1, 1), stride=(2, 1, 1)) for _ in range(2)]
            )
            self.enc_out = CausalConv3d(2 * w, 2 * C)
            self.dec_in = CausalConv3d(C, 2 * w)
            self.dec_time = nn.ModuleList([_TimeUpsample(2 * w), _TimeUpsample(2 * w), nn.Identity()])
            self.dec_space = nn.ModuleList([CausalConv3d(a, b) for a, b in ((2 * w, 2 * w), (2 * w, w), (w, w))])
            self.dec_out = CausalConv3d(w, 3)
        self.eval()

    # --- one causal pass over some frames; cache=None means "the whole video at once" ---

    def _encode_frames(self, x: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        h = nn.functional.silu(self.enc_in(x, cache))  # (B, w, F, H, W)
        for space, time in zip(self.enc_space, self.enc_time, strict=True):
            h = nn.functional.silu(space(h, cache))  # (B, c, F, H/2, W/2): space halves
            h = h if isinstance(time, nn.Identity) else time(h, cache)  # (B, c, 1 + (F-1)/2, ...) at the start
        h = self.enc_out(channel_rms_norm(h), cache)  # (B, 2C, F', H/8, W/8)
        return h[:, : self.latent_channels]  # the mean; the other C channels are the log-variance

    def _decode_frames(self, z: torch.Tensor, cache: Cache | None) -> torch.Tensor:
        h = nn.functional.silu(self.dec_in(z, cache))  # (B, 2w, F', h, w)
        for time, space in zip(self.dec_time, self.dec_space, strict=True):
            h = h if isinstance(time, nn.Identity) else time(h, cache)  # time doubles, frame 0 excepted
            h = nn.functional.interpolate(h, scale_factor=(1, 2, 2), mode="nearest")  # (B, c, F, 2h, 2w)
            h = nn.functional.silu(space(h, cache))
        return self.dec_out(channel_rms_norm(h), cache).clamp(-1.0, 1.0)  # (B, 3, F, H, W)

    # --- the public contract ---

    def encode(self, video: torch.Tensor, *, chunked: bool = True) -> torch.Tensor:
        r"""Video ``(B, 3, F, H, W)`` to latent ``(B, C, 1 + (F - 1)/4, H/8, W/8)`` (the posterior mean).

        :param video: pixels in :math:`[-1, 1]`; :math:`F = 1 + 4k`, :math:`H` and :math:`W` multiples of 8.
        :param chunked: ``True``: frame 0, then groups of 4 frames, with a cache
            (how Wan's VAE runs); ``False``: one pass over all frames.
        :returns: the latent, not normalised (see :func:`~infralens.diffusion.normalize_latents`).
        """
        F = self._check_video(video)
        with torch.no_grad():
            if not chunked:
                return self._encode_frames(video, None)
            cache: Cache = {}
            bounds = [(0, 1)] + [(s, s + 4) for s in range(1, F, 4)]  # frame 0 alone, then groups of 4
            chunks = [self._encode_frames(video[:, :, a:b], cache) for a, b in bounds]  # (B, C, 1, h, w) each
            return torch.cat(chunks, dim=2)  # (B, C, F', h, w)

    def decode(self, latents: torch.Tensor, *, chunked: bool = True) -> torch.Tensor:
        r"""Latent ``(B, C, F', h, w)`` to video ``(B, 3, 1 + 4(F' - 1), 8h, 8w)``, clamped to :math:`[-1, 1]`.

        :param latents: not normalised (undo :func:`~infralens.diffusion.normalize_latents` first).
        :param chunked: ``True``: one latent frame at a time with a cache (how
            Wan's VAE runs); ``False``: one pass.
        :returns: the video.
        """
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(
                f"latents must be (B, C, F', h, w) with C = latent_channels = {self.latent_channels}, "
                f"e.g. torch.randn(1, {self.latent_channels}, 3, 4, 6); got {got}"
            )
        with torch.no_grad():
            if not chunked:
                return self._decode_frames(latents, None)
            cache: Cache = {}
            frames = [self._decode_frames(latents[:, :, j : j + 1], cache) for j in range(latents.shape[2])]
            return torch.cat(frames, dim=2)  # (B, 3, 1 + 4(F' - 1), H, W)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``decode(encode(video))``: same shape as ``video``."""
        return self.decode(self.encode(video))

    def _check_video(self, video: torch.Tensor) -> int:
        if not isinstance(video, torch.Tensor) or video.ndim != 5 or video.shape[1] != 3:
            got = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise ValueError(f"video must be (B, 3, F, H, W), e.g. torch.rand(1, 3, 9, 32, 32) * 2 - 1; got {got}")
        if not video.is_floating_point():
            raise ValueError(f"video must be floating point pixels in [-1, 1], e.g. torch.float32; got {video.dtype}")
        F, H, W = video.shape[2:]
        t, s = self.temporal_factor, self.spatial_factor
        if F < 1:
            raise ValueError(f"frames must be >= 1 (1 + {t}k), e.g. frames=9; got {F}")
        if (F - 1) % t:
            lo = 1 + (F - 1) // t * t
            raise ValueError(
                f"frames={F} is not 1 + {t}k: the causal VAE encodes frame 0 alone and then groups of {t}; "
                f"nearest valid: {lo} or {lo + t}"
            )
        for name, size in (("height", H), ("width", W)):
            if size % s or size == 0:
                lo = size // s * s
                near = f"{lo} or {lo + s}" if lo else f"{s}"
                raise ValueError(f"{name}={size} is not a multiple of {s}, the spatial factor; nearest valid: {near}")
        return F
