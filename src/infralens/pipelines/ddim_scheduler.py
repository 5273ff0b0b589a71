r"""A DDIM scheduler object with diffusers' interface, built from the library's formulas.

A pipeline does not call formulas; it calls a *scheduler component* that owns
the time axis and the update rule. :class:`TinyDDIMScheduler` has the methods
a diffusers pipeline uses, with diffusers' ``DDIMScheduler`` defaults
(``linear`` betas from ``1e-4`` to ``0.02``, 1000 training steps, ``"leading"``
spacing, ``clip_sample=True``, ``set_alpha_to_one=True``, epsilon prediction):

* ``set_timesteps(N)`` builds ``timesteps`` with
  :func:`~infralens.diffusion.inference_timesteps`;
* ``scale_model_input(sample, t)`` returns the sample (DDIM needs no scaling);
* ``step(model_output, t, sample)`` applies
  :func:`~infralens.diffusion.ddim_step` from :math:`t` to
  :math:`t - T/N`, with :math:`\bar\alpha = 1` past the last step.

It has no weights: it is configuration plus arithmetic.
"""

from __future__ import annotations

import torch

from infralens.core.args import positive_int

from ..diffusion import alphas_cumprod, ddim_step, inference_timesteps, make_betas


class TinyDDIMScheduler:
    r"""``set_timesteps``, ``timesteps``, ``scale_model_input`` and ``step``, as a diffusers pipeline calls them.

    :param num_train_timesteps: :math:`T`.
    :param clip_sample: clip :math:`\hat x_0` to :math:`[-1, 1]` (diffusers' default ``True``).

    >>> scheduler = TinyDDIMScheduler()
    >>> scheduler.set_timesteps(4)
    >>> scheduler.timesteps
    tensor([750, 500, 250,   0])
    >>> x = torch.randn(1, 4, 8, 8)
    >>> scheduler.step(torch.zeros_like(x), 750, x).shape
    torch.Size([1, 4, 8, 8])
    """

    init_noise_sigma = 1.0
    """The starting latent is standard normal noise times this (1 for DDIM)."""
    order = 1
    """Model calls per step."""

    def __init__(self, num_train_timesteps: int = 1000, clip_sample: bool = True):
        self.num_train_timesteps = positive_int("num_train_timesteps", num_train_timesteps, example=1000)
        self.clip_sample = bool(clip_sample)
        self.alphas_cumprod = alphas_cumprod(make_betas("linear", num_train_timesteps=self.num_train_timesteps))
        self.num_inference_steps: int | None = None
        self.timesteps = torch.empty(0, dtype=torch.long)

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Build ``self.timesteps``, noisiest first, ``(N,)`` int64, with ``"leading"`` spacing.

        :param num_inference_steps: :math:`N`, from 1 to ``num_train_timesteps``.
        """
        self.timesteps = inference_timesteps(num_inference_steps, num_train_timesteps=self.num_train_timesteps)
        self.num_inference_steps = num_inference_steps

    def scale_model_input(self, sample: torch.Tensor, timestep: int | torch.Tensor) -> torch.Tensor:
        """The denoiser's input at ``timestep``: the sample itself for DDIM."""
        return sample

    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        r"""The previous (less noisy) sample, from :math:`t` to :math:`t - T/N`.

        :param model_output: the denoiser's :math:`\hat\epsilon`, shape of ``sample``.
        :param timestep: :math:`t`, one of ``self.timesteps``.
        :param sample: :math:`x_t`.
        :returns: :math:`x_{t - T/N}`, same shape.
        """
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step, e.g. scheduler.set_timesteps(50)")
        t = int(timestep)
        if t not in self.timesteps.tolist():
            raise ValueError(
                f"timestep must be one of scheduler.timesteps, e.g. timestep={self.timesteps[0].item()}; got {t}"
            )
        prev = t - self.num_train_timesteps // self.num_inference_steps
        alpha_bar_prev = self.alphas_cumprod[prev].item() if prev >= 0 else 1.0  # set_alpha_to_one
        out = ddim_step(
            sample,
            model_output,
            self.alphas_cumprod[t].item(),
            alpha_bar_prev,
            clip_sample=1.0 if self.clip_sample else None,
        )
        return out.prev_sample  # (B, ...): the shape of sample
