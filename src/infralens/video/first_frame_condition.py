r"""The image-to-video condition of Wan 2.x: a frame mask and a VAE latent, concatenated on channels.

To make a video start from an image, Wan builds a second latent-shaped tensor
``y`` and the denoiser reads ``cat([latents, y], dim=1)``:

* the **latent** part: the VAE encoding of a video whose frame 0 is the image
  and whose other :math:`F - 1` frames are zeros, normalised like the loop's
  latents, :math:`C` channels;
* the **mask** part: which frames are given. A per-frame mask has :math:`F`
  entries but the latent has :math:`F' = 1 + (F - 1)/t_f` frames, so the mask is
  folded into :math:`t_f` channels per latent frame, with frame 0 repeated
  :math:`t_f` times to fill the first latent frame (the causal VAE's first frame
  is alone). Channel :math:`k` of latent frame :math:`j \ge 1` is frame
  :math:`t_f (j - 1) + 1 + k`.

So ``y`` has :math:`t_f + C` channels (4 + 16 = 20 for Wan 2.1, making the DiT's
input 36 channels). This follows ``WanVideoUnit_ImageEmbedderVAE`` in
DiffSynth-Studio 2.1.12 (``pipelines/wan_video.py``) and diffusers'
``WanImageToVideoPipeline.prepare_latents``.
"""

from __future__ import annotations

import torch

from infralens.core.args import positive_int
from infralens.diffusion import normalize_latents
from infralens.families import LatentScaling


def first_frame_mask(
    frames: int, latent_height: int, latent_width: int, *, batch: int = 1, temporal_factor: int = 4
) -> torch.Tensor:
    r"""The "frame 0 is given" mask folded to latent frames: ``(B, t_f, F', h, w)``, ones at latent frame 0.

    :param frames: :math:`F = 1 + t_f k` video frames.
    :param latent_height: :math:`h`.
    :param latent_width: :math:`w`.
    :param batch: :math:`B`.
    :param temporal_factor: :math:`t_f`.
    :returns: float32 mask; channel :math:`k` of latent frame :math:`j` is 1 iff its video frame is given.

    >>> m = first_frame_mask(9, 2, 3)
    >>> tuple(m.shape), m[0, :, 0].min().item(), m[0, :, 1:].max().item()
    ((1, 4, 3, 2, 3), 1.0, 0.0)
    """
    F = positive_int("frames", frames, example=81)
    t = positive_int("temporal_factor", temporal_factor, example=4)
    h = positive_int("latent_height", latent_height, example=60)
    w = positive_int("latent_width", latent_width, example=104)
    B = positive_int("batch", batch, example=1)
    if (F - 1) % t:
        lo = 1 + (F - 1) // t * t
        raise ValueError(f"frames={F} is not 1 + {t}k (frame 0, then groups of {t}); nearest valid: {lo} or {lo + t}")
    per_frame = torch.zeros(B, F, h, w)  # (B, F, h, w): one entry per video frame
    per_frame[:, 0] = 1.0  # only frame 0 is given
    padded = torch.cat([per_frame[:, :1].expand(B, t - 1, h, w), per_frame], dim=1)  # (B, F + t_f - 1, h, w)
    folded = padded.reshape(B, (F - 1) // t + 1, t, h, w)  # (B, F', t_f, h, w): t_f frames per latent frame
    return folded.transpose(1, 2).contiguous()  # (B, t_f, F', h, w)


def image_condition(
    vae: torch.nn.Module, image: torch.Tensor, frames: int, *, family: str | LatentScaling | None = "wan2.1"
) -> torch.Tensor:
    r"""Wan's image-to-video condition ``y = cat([mask, z_image], dim=1)``, shape ``(B, t_f + C, F', H/s, W/s)``.

    :param vae: a causal video VAE with ``encode(video)``, ``spatial_factor`` and ``temporal_factor``
        (for example :class:`~infralens.nets.TinyCausalVideoVAE`).
    :param image: the first frame, ``(B, 3, H, W)``, pixels in :math:`[-1, 1]`.
    :param frames: :math:`F` of the video to generate.
    :param family: the latent normalisation (:func:`~infralens.diffusion.normalize_latents`);
        ``None`` keeps the raw latent.
    :returns: ``y``, to concatenate to the latents on the channel axis.

    >>> from infralens.nets import TinyCausalVideoVAE
    >>> y = image_condition(TinyCausalVideoVAE(), torch.zeros(1, 3, 16, 24), frames=9)
    >>> tuple(y.shape)                                   # 4 mask + 16 latent channels
    (1, 20, 3, 2, 3)
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(
            f"image must be (B, 3, H, W), one frame per sample, e.g. torch.zeros(1, 3, 480, 832); got {got}"
        )
    F = positive_int("frames", frames, example=81)
    B, _, H, W = image.shape
    rest = image.new_zeros(B, 3, F - 1, H, W)  # (B, 3, F - 1, H, W): the frames to be generated
    video = torch.cat([image[:, :, None], rest], dim=2)  # (B, 3, F, H, W): the image, then zeros
    z = vae.encode(video)  # (B, C, F', H/s, W/s)
    if family is not None:
        z = normalize_latents(z, family)
    s, t = vae.spatial_factor, vae.temporal_factor
    mask = first_frame_mask(F, H // s, W // s, batch=B, temporal_factor=t).to(z)  # (B, t_f, F', h, w)
    return torch.cat([mask, z], dim=1)  # (B, t_f + C, F', h, w)
