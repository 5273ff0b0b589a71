r"""VACE, Wan's control branch: one control video and mask in latent space, hints added after chosen blocks.

DiffSynth-Studio's Wan pipeline does not take ControlNets; its controls
(depth, pose, edges, inpainting masks, reference frames) go through VACE. The
pipeline turns one control video :math:`v` and one pixel mask :math:`m`
(1 where the video is to be generated) into a latent-shaped context with
three parts (``WanVideoUnit_VACE``):

.. math:: c = \big[\; E(v \odot (1 - m)),\;\; E(v \odot m),\;\;
   \operatorname{unshuffle}_s(m) \;\big]

the VAE latents :math:`E` of the kept ("inactive") and the regenerated
("reactive") parts, :math:`C` channels each, and the mask with every
:math:`s \times s` pixel patch moved onto channels (:math:`s^2` channels,
resampled in time to the latent's :math:`F'` frames). For Wan 2.1
(:math:`C = 16`, :math:`s = 8`) that is :math:`2 \cdot 16 + 64 = 96` channels, the
``vace_in_dim`` of ``VaceWanModel``.

A separate stack of DiT blocks reads :math:`c` (patchified like the latent)
next to the main hidden states and produces one *hint* per entry of
``vace_layers``; after main block :math:`\ell_k` the hidden states receive

.. math:: x \leftarrow x + \text{vace\_scale} \cdot h_k

There is one ``vace_scale`` for the whole control and no start/end window:
several controls are combined into one video and mask before the branch runs.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch

from infralens.core import positive_int


def vace_mask_latents(mask: torch.Tensor, *, spatial_factor: int = 8, temporal_factor: int = 4) -> torch.Tensor:
    r"""A pixel mask ``(F, H, W)`` in latent layout ``(1, s^2, F', H/s, W/s)``, as DiffSynth's VACE unit builds it.

    Each :math:`s \times s` patch of pixels goes onto :math:`s^2` channels
    (channel :math:`p s + q` holds pixel :math:`(p, q)` of the patch); the frames
    are then resampled to :math:`F' = \lfloor (F + t_f - 1) / t_f \rfloor` by
    nearest-exact interpolation, so latent frame :math:`j` takes the mask of one
    video frame, not the union of its group.

    :param mask: ``(F, H, W)``, 1 where the video is generated, 0 where it is kept.
    :param spatial_factor: :math:`s`, pixels per latent cell.
    :param temporal_factor: :math:`t_f`, frames per latent frame after the first.
    :returns: ``(1, s^2, F', H/s, W/s)``.

    >>> m = torch.zeros(5, 16, 32)
    >>> m[:, :, 16:] = 1                                  # regenerate the right half
    >>> lat = vace_mask_latents(m)
    >>> tuple(lat.shape)
    (1, 64, 2, 2, 4)
    >>> lat[0, :, 0, 0].sum(0).tolist()                  # masked pixels of each latent cell in a row
    [0.0, 0.0, 64.0, 64.0]
    """
    s = positive_int("spatial_factor", spatial_factor, example=8)
    t = positive_int("temporal_factor", temporal_factor, example=4)
    if not isinstance(mask, torch.Tensor) or mask.ndim != 3 or mask.shape[1] % s or mask.shape[2] % s:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be (F, H, W) with H and W multiples of {s}, e.g. (81, 480, 832); got {got}")
    F, H, W = mask.shape
    patches = mask.reshape(F, H // s, s, W // s, s).permute(2, 4, 0, 1, 3)  # (s, s, F, H/s, W/s)
    lat = patches.reshape(1, s * s, F, H // s, W // s)  # channel p*s + q: pixel (p, q) of each patch
    frames = (F + t - 1) // t  # frame 0 alone, then one per group of t_f
    return torch.nn.functional.interpolate(lat, size=(frames, H // s, W // s), mode="nearest-exact")


def vace_context(inactive: torch.Tensor, reactive: torch.Tensor, mask_latents: torch.Tensor) -> torch.Tensor:
    r"""The VACE context :math:`[E(v(1-m)), E(vm), \operatorname{unshuffle}(m)]` on channels.

    :param inactive: latents of the kept part of the control video ``(1, C, F', H', W')``.
    :param reactive: latents of the part to regenerate, same shape.
    :param mask_latents: :func:`vace_mask_latents` of the mask, ``(1, s^2, F', H', W')``.
    :returns: ``(1, 2C + s^2, F', H', W')``; 96 channels for Wan 2.1.

    >>> z = torch.zeros(1, 16, 2, 2, 3)
    >>> vace_context(z, z, vace_mask_latents(torch.ones(5, 16, 24))).shape
    torch.Size([1, 96, 2, 2, 3])
    """
    parts = (inactive, reactive, mask_latents)
    if not all(isinstance(p, torch.Tensor) and p.ndim == 5 for p in parts) or inactive.shape != reactive.shape:
        raise ValueError(
            "inactive and reactive must be latents of the same shape (1, C, F', H', W') and mask_latents "
            f"(1, s^2, F', H', W'), e.g. (1, 16, 21, 60, 104) and (1, 64, 21, 60, 104); got "
            f"{[tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__ for p in parts]}"
        )
    if mask_latents.shape[2:] != inactive.shape[2:]:
        raise ValueError(
            f"mask_latents must have the latents' frames and size {tuple(inactive.shape[2:])}; "
            f"got {tuple(mask_latents.shape[2:])}"
        )
    return torch.cat([inactive, reactive, mask_latents], dim=1)  # (1, 2C + s^2, F', H', W')


def inject_vace_hints(
    blocks: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    hints: Sequence[torch.Tensor],
    *,
    vace_layers: Sequence[int],
    vace_scale: float = 1.0,
) -> torch.Tensor:
    r"""Run the main blocks, adding ``vace_scale`` times hint :math:`k` after block ``vace_layers[k]``.

    :param blocks: the DiT's blocks as functions of the hidden states ``(B, N, D) -> (B, N, D)``.
    :param x: hidden states entering the first block.
    :param hints: one ``(B, N, D)`` tensor per entry of ``vace_layers``.
    :param vace_layers: the block indices after which a hint is added, increasing.
    :param vace_scale: the control's one weight (0 is the same as no control).
    :returns: the hidden states after the last block.

    >>> blocks = [lambda h: 2 * h] * 4
    >>> x, hints = torch.ones(1, 1, 1), [torch.ones(1, 1, 1), 10 * torch.ones(1, 1, 1)]
    >>> inject_vace_hints(blocks, x, hints, vace_layers=(0, 2)).item()   # ((2 + 1) * 2 * 2 + 10) * 2
    44.0
    """
    layers = list(vace_layers)
    if len(hints) != len(layers):
        raise ValueError(f"hints must give one tensor per entry of vace_layers ({len(layers)}); got {len(hints)}")
    if any(not isinstance(i, int) or not 0 <= i < len(blocks) for i in layers) or layers != sorted(set(layers)):
        raise ValueError(
            f"vace_layers must be increasing block indices in [0, {len(blocks)}), e.g. (0, 2); got {tuple(layers)}"
        )
    if isinstance(vace_scale, bool) or not isinstance(vace_scale, numbers.Real):
        raise ValueError(f"vace_scale must be a number, e.g. vace_scale=1.0; got {vace_scale!r}")
    hint_of = {block: k for k, block in enumerate(layers)}
    for i, block in enumerate(blocks):
        x = block(x)  # (B, N, D)
        if i in hint_of:
            x = x + vace_scale * hints[hint_of[i]]  # the control enters the residual stream here
    return x
