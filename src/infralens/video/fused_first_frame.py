r"""Text-image-to-video in one latent (Wan 2.2 TI2V-5B): the first frame is part of the latent and stays clean.

Wan 2.1's image-to-video concatenates an image condition on the channel axis
(:func:`image_condition`). TI2V-5B does neither that nor CLIP: the image's VAE
latent *is* latent frame 0, and two rules keep it there:

* **per-token timesteps**: the denoiser gets one timestep per token instead of
  one per sample, :math:`0` (clean) for the tokens of latent frame 0 and the
  loop's :math:`t` for all others,

  .. math:: t_n = \begin{cases} 0 & n < h w / (p_h p_w) \\ t & \text{otherwise} \end{cases},
     \qquad n = 0, \dots, F' h w / (p_h p_w) - 1

* **re-injection**: after every Euler step latent frame 0 is overwritten with
  the image's latent again, so whatever the step did to it is discarded.

This follows ``WanVideoUnit_ImageEmbedderFused``, the ``seperated_timestep``
branch of ``model_fn_wan_video`` and the ``first_frame_latents`` line of
``WanVideoPipeline.__call__`` in DiffSynth-Studio 2.1.12; ``tox -e upstream``
runs them and compares.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from infralens.diffusion import flow_euler_step
from infralens.families import get_family


def _check_latents(latents: object) -> torch.Tensor:
    if not isinstance(latents, torch.Tensor) or latents.ndim != 5:
        raise ValueError(
            "latents must be a video latent (B, C, F', h, w), e.g. torch.randn(1, 48, 31, 44, 80); "
            f"got {getattr(latents, 'shape', latents)!r}"
        )
    return latents


def first_frame_timesteps(timestep: float, latents: torch.Tensor, *, family: str = "wan2.2") -> torch.Tensor:
    r"""One timestep per token: 0 for the tokens of latent frame 0, ``timestep`` for every other token.

    :param timestep: :math:`t` of the loop (:math:`1000\sigma`).
    :param latents: the video latent ``(B, C, F', h, w)``; only its shape is read.
    :param family: whose DiT patch :math:`(1, p_h, p_w)` makes the tokens.
    :returns: ``(F' h w / (p_h p_w),)``, token order frame, row, column (the DiT's patchify order).

    >>> t = first_frame_timesteps(999.0, torch.zeros(1, 48, 3, 4, 6))
    >>> t.shape, t[:6].tolist(), t[6:].unique().tolist()   # 6 tokens per frame
    (torch.Size([18]), [0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [999.0])
    """
    x = _check_latents(latents)
    _, ph, pw = get_family(family).patch
    _, _, frames, h, w = x.shape
    if h % ph or w % pw:
        raise ValueError(
            f"latents must have h and w divisible by the patch ({ph}, {pw}), e.g. h={ph * (h // ph + 1)}; "
            f"got h={h}, w={w}"
        )
    per_frame = h * w // (ph * pw)  # tokens in one latent frame
    clean = torch.zeros(per_frame, dtype=x.dtype, device=x.device)  # frame 0: the image, t = 0
    noisy = torch.full(((frames - 1) * per_frame,), float(timestep), dtype=x.dtype, device=x.device)
    return torch.cat([clean, noisy])  # (F' h w / (p_h p_w),)


def fused_first_frame_sample(
    denoiser: Callable[..., torch.Tensor],
    latents: torch.Tensor,
    first_frame_latents: torch.Tensor,
    sigmas: torch.Tensor,
    text: torch.Tensor | None = None,
    *,
    family: str = "wan2.2",
) -> torch.Tensor:
    r"""The TI2V loop: frame 0 set to the image's latent, per-token timesteps, frame 0 re-injected after each step.

    :param denoiser: called as ``denoiser(latents, timesteps, text)`` with ``timesteps`` of shape ``(N_tokens,)``
        from :func:`first_frame_timesteps`.
    :param latents: the starting noise ``(B, C, F', h, w)``.
    :param first_frame_latents: the image's latent ``(B, C, 1, h, w)``.
    :param sigmas: the sigmas to visit, decreasing (:func:`~infralens.diffusion.flow_sigmas`).
    :param text: prompt embeddings passed to every call.
    :param family: whose DiT patch makes the tokens.
    :returns: the latent at :math:`\sigma = 0`; its frame 0 equals ``first_frame_latents``.

    >>> first = torch.ones(1, 4, 1, 2, 2)
    >>> out = fused_first_frame_sample(lambda x, t, c: torch.ones_like(x),
    ...                                torch.zeros(1, 4, 3, 2, 2), first, torch.tensor([1.0, 0.5]))
    >>> out[:, :, 0].unique().tolist(), out[:, :, 1:].unique().tolist()
    ([1.0], [-1.0])
    """
    x = _check_latents(latents).clone()
    z = _check_latents(first_frame_latents)
    if z.shape[2] != 1 or z.shape[:2] != x.shape[:2] or z.shape[3:] != x.shape[3:]:
        want = (*x.shape[:2], 1, *x.shape[3:])
        raise ValueError(f"first_frame_latents must be one latent frame {want}; got {tuple(z.shape)}")
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten().tolist()
    if not s or any(b >= a for a, b in itertools.pairwise(s)) or any(not 0 <= v <= 1 for v in s):
        raise ValueError(f"sigmas must decrease strictly and lie in [0, 1], e.g. flow_sigmas('Wan', 50); got {s}")
    x[:, :, :1] = z  # the image becomes latent frame 0
    for sigma, sigma_next in zip(s, [*s[1:], 0.0], strict=True):
        t = first_frame_timesteps(1000.0 * sigma, x, family=family)  # (N_tokens,) 0 on frame 0
        with torch.no_grad():
            v = denoiser(x, t, text)  # (B, C, F', h, w)
        x = flow_euler_step(x, v, sigma, sigma_next)  # every frame moves, frame 0 included
        x[:, :, :1] = z  # re-injection: frame 0 back to the image's latent
    return x
