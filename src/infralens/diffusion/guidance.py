r"""Classifier-free guidance: extrapolate from the unconditional prediction towards the conditional one.

.. math:: \hat\epsilon = \hat\epsilon_\varnothing + w\,(\hat\epsilon_c - \hat\epsilon_\varnothing)
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from infralens.core.args import same_shape

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``denoiser(latents, timesteps, text) -> prediction``, as in :class:`TinyDenoiser`."""


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    r"""Guided prediction :math:`\hat\epsilon_\varnothing + w\,(\hat\epsilon_c - \hat\epsilon_\varnothing)`.

    :math:`w = 1` returns the conditional prediction, :math:`w = 0` the
    unconditional one, :math:`w > 1` pushes further along the difference.

    :param uncond: :math:`\hat\epsilon_\varnothing`, the prediction without the prompt (or with the negative prompt).
    :param cond: :math:`\hat\epsilon_c`, the prediction with the prompt, same shape.
    :param scale: :math:`w`, the guidance scale (``guidance_scale`` in diffusers).
    :returns: the guided prediction, same shape and dtype.

    >>> import torch
    >>> u, c = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    >>> torch.allclose(cfg_combine(u, c, 1.0), c, atol=1e-6)
    True
    >>> torch.allclose(cfg_combine(u, c, 7.5), u + 7.5 * (c - u), atol=1e-5)
    True
    """
    same_shape("uncond", uncond, "cond", cond)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ValueError(f"scale must be a real number, e.g. scale=7.5; got {scale!r}")
    return torch.lerp(uncond, cond, float(scale))  # one pass; lerp extrapolates for scale > 1


def guided_prediction(
    denoiser: Denoiser,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    scale: float,
    *,
    mode: str = "batch",
) -> torch.Tensor:
    r"""One guided prediction, computed the way a pipeline does it.

    * ``mode="batch"``: one call on a doubled batch ``[uncond, cond]``, then split
      (diffusers' Stable Diffusion pipelines);
    * ``mode="two_pass"``: two calls, conditional then unconditional (diffusers'
      Wan pipeline, DiffSynth-Studio).

    Both give :math:`\hat\epsilon_\varnothing + w(\hat\epsilon_c - \hat\epsilon_\varnothing)`;
    they differ in peak memory (a doubled batch) and in the number of calls.

    :param denoiser: ``denoiser(latents, timesteps, text)``.
    :param latents: ``(B, ...)``.
    :param timesteps: ``(B,)``.
    :param cond: text embeddings of the prompt, ``(B, L, D)``.
    :param uncond: text embeddings of the empty or negative prompt, same shape.
    :param scale: :math:`w`.
    :param mode: ``"batch"`` or ``"two_pass"``.
    :returns: the guided prediction, shape of ``latents``.

    >>> from infralens.nets import TinyDenoiser
    >>> model = TinyDenoiser()
    >>> x, t = torch.randn(2, 4, 8, 8), torch.tensor([900, 100])
    >>> cond, uncond = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    >>> with torch.no_grad():
    ...     one = guided_prediction(model, x, t, cond, uncond, 7.5, mode="batch")
    ...     two = guided_prediction(model, x, t, cond, uncond, 7.5, mode="two_pass")
    >>> one.shape, torch.allclose(one, two, atol=1e-5)
    (torch.Size([2, 4, 8, 8]), True)
    """
    same_shape("cond", cond, "uncond", uncond)
    if mode == "batch":
        both = denoiser(torch.cat([latents] * 2), torch.cat([timesteps] * 2), torch.cat([uncond, cond]))  # (2B, ...)
        pred_uncond, pred_cond = both.chunk(2)  # (B, ...) each
    elif mode == "two_pass":
        pred_cond = denoiser(latents, timesteps, cond)
        pred_uncond = denoiser(latents, timesteps, uncond)
    else:
        raise ValueError(f"mode must be 'batch' or 'two_pass', e.g. mode='batch'; got {mode!r}")
    return cfg_combine(pred_uncond, pred_cond, scale)


@dataclass(frozen=True)
class StepCost:
    """What one denoising step costs, measured on a real module."""

    calls: int
    """Denoiser calls in the step."""
    batch: int
    """Batch of the largest call."""
    flops: int
    """FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` over the step."""
    largest_activation_bytes: int
    """Bytes of the largest tensor a submodule produced: it grows with the batch of a call."""


def step_cost(fn: Callable[[], torch.Tensor], module: torch.nn.Module) -> StepCost:
    """Run ``fn`` (one step) and count ``module``'s calls, their largest batch, FLOPs and largest activation.

    >>> from infralens.nets import TinyDenoiser
    >>> model = TinyDenoiser()
    >>> x, t, text = torch.randn(1, 4, 8, 8), torch.tensor([500]), torch.randn(1, 6, 16)
    >>> plain = step_cost(lambda: model(x, t, text), model)
    >>> plain.calls, plain.batch
    (1, 1)
    """
    calls: list[int] = []
    largest = [0]

    def on_call(mod, args, out):
        calls.append(args[0].shape[0])

    def on_sub(mod, args, out):
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.numel() * out.element_size())

    handles = [module.register_forward_hook(on_call)]
    handles += [m.register_forward_hook(on_sub) for m in module.modules() if m is not module]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
    finally:
        for h in handles:
            h.remove()
    return StepCost(len(calls), max(calls, default=0), counter.get_total_flops(), largest[0])
