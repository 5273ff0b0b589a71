r"""The flow-matching sampling loop as DiffSynth-Studio runs it: one Euler step per sigma.

For each of the :math:`N` sigmas :math:`\sigma_0 > \sigma_1 > \dots > \sigma_{N-1}`
(from :func:`flow_sigmas`), with :math:`\sigma_N = 0`:

1. call the denoiser on the latent at timestep :math:`1000\,\sigma_i` with the
   prompt's embeddings; if ``guidance_scale`` is not 1, call it again with the
   negative prompt's and combine,
   :math:`\hat v = \hat v_- + w\,(\hat v_+ - \hat v_-)`;
2. step: :math:`x \leftarrow x + (\sigma_{i+1} - \sigma_i)\,\hat v`.

So the loop makes :math:`N` denoiser calls, or :math:`2N` with guidance, and
the latent is the only state carried from step to step. This mirrors
``WanVideoPipeline.__call__`` (``pipelines/wan_video.py``) and
``FlowMatchScheduler.step`` (``diffusion/flow_match.py``) in DiffSynth-Studio
2.1.12, where guidance is skipped when ``cfg_scale == 1``.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Mapping

import torch

from .flow import flow_euler_step
from .guidance import cfg_combine


def flow_sample(
    denoiser: Callable[..., torch.Tensor],
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    text: torch.Tensor | None = None,
    *,
    negative_text: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    shared: Mapping[str, object] | None = None,
) -> torch.Tensor:
    r"""Integrate the predicted velocity from :math:`\sigma_0` down to 0 with Euler steps.

    :param denoiser: called as ``denoiser(latents, timesteps, text, **shared)``; ``timesteps``
        is ``(B,)`` holding :math:`1000\,\sigma_i`.
    :param latents: the starting latent :math:`x_{\sigma_0}` (pure noise when :math:`\sigma_0 = 1`), ``(B, ...)``.
    :param sigmas: the :math:`N` sigmas to visit, decreasing, in ``[0, 1]``, shape ``(N,)``.
    :param text: prompt embeddings passed to every call.
    :param negative_text: embeddings of the negative (or empty) prompt; needed when
        ``guidance_scale != 1``.
    :param guidance_scale: :math:`w` (DiffSynth's ``cfg_scale``); 1 means one call per step.
    :param shared: keyword arguments given to every call, conditional or not (DiffSynth's
        ``inputs_shared``: an image condition, for example).
    :returns: the latent at :math:`\sigma = 0`, shape and dtype of ``latents``.

    >>> from infralens.diffusion import GaussianVelocity, flow_sigmas
    >>> field = GaussianVelocity(mean=0.5, std=0.0)   # all data is the point 0.5
    >>> x = flow_sample(field, torch.randn(2, 4, 8, 8), flow_sigmas("Wan", 5))
    >>> torch.allclose(x, torch.full_like(x, 0.5), atol=1e-5)
    True
    """
    if not isinstance(latents, torch.Tensor) or latents.ndim < 1:
        raise ValueError(f"latents must be a tensor (B, ...), e.g. torch.randn(1, 16, 21, 60, 104); got {latents!r}")
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten().tolist() if isinstance(sigmas, torch.Tensor) else None
    if s is None or len(s) == 0 or torch.as_tensor(sigmas).ndim != 1:
        raise ValueError(f"sigmas must be a 1-D tensor of N >= 1 values, e.g. flow_sigmas('Wan', 50); got {sigmas!r}")
    if any(not 0 <= v <= 1 for v in s) or any(b >= a for a, b in itertools.pairwise(s)):
        raise ValueError(f"sigmas must decrease strictly and lie in [0, 1], e.g. flow_sigmas('Wan', 50); got {s}")
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real):
        raise ValueError(f"guidance_scale must be a real number, e.g. guidance_scale=5.0; got {guidance_scale!r}")
    guided = guidance_scale != 1.0
    if guided and negative_text is None:
        raise ValueError(
            f"guidance_scale={guidance_scale} needs negative_text, the negative or empty prompt's embeddings "
            "(e.g. negative_text=torch.zeros_like(text)); or use guidance_scale=1.0 for one call per step"
        )
    kwargs = dict(shared or {})
    B = latents.shape[0] if latents.ndim else 1
    nexts = [*s[1:], 0.0]  # the last step goes to sigma = 0
    for sigma, sigma_next in zip(s, nexts, strict=True):
        timesteps = torch.full((B,), 1000.0 * sigma, device=latents.device)  # (B,) what the model reads
        with torch.no_grad():
            v = denoiser(latents, timesteps, text, **kwargs)  # (B, ...) conditional prediction
            if guided:
                v_neg = denoiser(latents, timesteps, negative_text, **kwargs)  # second call: negative prompt
                v = cfg_combine(v_neg, v, guidance_scale)  # v_neg + w (v - v_neg)
        latents = flow_euler_step(latents, v, sigma, sigma_next)  # x + (sigma' - sigma) v
    return latents
