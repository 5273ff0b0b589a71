r"""Latent normalisation: the constants between a VAE's raw latent and the latent the denoiser was trained on.

A VAE encoder's output does not have unit variance. Each family fixes
constants that map it to roughly zero mean and unit variance before the loop,
and back before decoding. Two conventions exist, and both are the per-channel
affine map

.. math:: \tilde z_c = (z_c - \mu_c) / \sigma_c, \qquad z_c = \sigma_c\,\tilde z_c + \mu_c

* **one scaling factor** (Stable Diffusion, SDXL; FLUX.1 adds a shift):
  :math:`\mu_c = \text{shift\_factor}` and :math:`\sigma_c = 1/\text{scaling\_factor}`
  for every channel, so :math:`\tilde z = \text{scaling\_factor}\,(z - \text{shift\_factor})`;
* **per-channel statistics** (Wan 2.1 and 2.2): ``latents_mean`` and
  ``latents_std`` hold one :math:`\mu_c` and one :math:`\sigma_c` per latent channel.

The values are per model, held by the family records of :mod:`infralens.families`
(sources in :data:`LATENT_SCALING`). Every pipeline applies the same affine pair
after ``vae.encode`` and before ``vae.decode``, written with a scale :math:`k`
and a shift :math:`m` per channel, :math:`\tilde z = (z - m)\,k` and
:math:`z = \tilde z / k + m`; :data:`VAE_CONSTANTS` names the file and line of
diffusers 0.42.1 that holds each value (or the released config, the only place
SD3's live) and the lines where the pipelines apply them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from infralens.core.args import compute_dtype
from infralens.families import LATENT_FAMILIES, LatentScaling

LATENT_SCALING: Mapping[str, LatentScaling] = MappingProxyType(
    {name: fam.scaling for name, fam in LATENT_FAMILIES.items() if fam.scaling is not None}
)
"""Normalisation constants by family: a read-only view of the family records (:mod:`infralens.families`).

Sources, checked by ``tox -e upstream``: ``sd``, diffusers 0.42.1
``AutoencoderKL`` default ``scaling_factor``; ``sdxl``, DiffSynth-Studio 2.1.12
``configs/model_configs.py`` (the SDXL VAE entry); ``sd3``, the released VAE
config only; ``flux``, DiffSynth-Studio ``models/flux_vae.py``; ``wan2.1``,
diffusers ``AutoencoderKLWan`` defaults and DiffSynth-Studio ``WanVideoVAE``;
``wan2.2``, DiffSynth-Studio ``WanVideoVAE38``.
"""


def mean_std(scaling: LatentScaling, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`(\mu_c, \sigma_c)` as float64 tensors of shape ``(C,)``, whichever convention the family uses.

    :param scaling: a family's :class:`~infralens.families.LatentScaling`.
    :param channels: :math:`C`, the latent's channel count; per-channel
        statistics must have exactly this many values.
    :returns: mean and standard deviation per channel.

    >>> mu, sigma = mean_std(LATENT_SCALING["sd"], 4)
    >>> mu.tolist(), sigma.tolist() == [1 / 0.18215] * 4
    ([0.0, 0.0, 0.0, 0.0], True)
    """
    if scaling.per_channel:
        if len(scaling.latents_mean) != channels:
            raise ValueError(
                f"latents have {channels} channels but these statistics have {len(scaling.latents_mean)}: "
                f"use the family whose VAE made the latent (e.g. 'wan2.1' for 16 channels)"
            )
        mean = torch.tensor(scaling.latents_mean, dtype=torch.float64)  # (C,)
        std = torch.tensor(scaling.latents_std, dtype=torch.float64)  # (C,)
        return mean, std
    shift = 0.0 if scaling.shift_factor is None else scaling.shift_factor
    mean = torch.full((channels,), shift, dtype=torch.float64)  # (C,)
    std = torch.full((channels,), 1.0 / scaling.scaling_factor, dtype=torch.float64)  # (C,)
    return mean, std


def _resolve(family: str | LatentScaling) -> LatentScaling:
    if isinstance(family, LatentScaling):
        return family
    if family not in LATENT_SCALING:
        names = ", ".join(map(repr, LATENT_SCALING))
        raise ValueError(f"family must be one of {names} or a LatentScaling, e.g. family='wan2.1'; got {family!r}")
    return LATENT_SCALING[family]


def _stats(latents: torch.Tensor, family: str | LatentScaling) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(latents, torch.Tensor) or latents.ndim < 3:
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"latents must be (B, C, ...) with channels on axis 1, e.g. (1, 16, 21, 60, 104); got {got}")
    dtype = compute_dtype(latents.dtype)
    mean, std = mean_std(_resolve(family), latents.shape[1])
    view = (1, -1) + (1,) * (latents.ndim - 2)  # (1, C, 1, ...): broadcast over batch, frames, height, width
    return mean.to(latents.device, dtype).reshape(view), std.to(latents.device, dtype).reshape(view)


def normalize_latents(latents: torch.Tensor, family: str | LatentScaling) -> torch.Tensor:
    r"""VAE latent to denoiser latent: :math:`\tilde z_c = (z_c - \mu_c) / \sigma_c` per channel.

    :param latents: :math:`z`, ``(B, C, H, W)`` or ``(B, C, F, H, W)``, as the VAE encoder returns it.
    :param family: a key of :data:`LATENT_SCALING` or a :class:`~infralens.families.LatentScaling`.
    :returns: :math:`\tilde z`, same shape and dtype (computed in float32 or better).

    >>> z = torch.randn(1, 4, 8, 8)
    >>> torch.allclose(normalize_latents(z, "sd"), 0.18215 * z, atol=1e-6)
    True
    """
    mean, std = _stats(latents, family)
    return ((latents.to(mean.dtype) - mean) / std).to(latents.dtype)  # (B, C, ...)


def denormalize_latents(latents: torch.Tensor, family: str | LatentScaling) -> torch.Tensor:
    r"""Denoiser latent back to VAE latent, before decoding: :math:`z_c = \sigma_c\,\tilde z_c + \mu_c`.

    :param latents: :math:`\tilde z`, ``(B, C, ...)``.
    :param family: a key of :data:`LATENT_SCALING` or a :class:`~infralens.families.LatentScaling`.
    :returns: :math:`z`, same shape and dtype.

    >>> z = torch.randn(1, 16, 3, 4, 4)
    >>> back = denormalize_latents(normalize_latents(z, "wan2.1"), "wan2.1")
    >>> torch.allclose(back, z, atol=1e-6)
    True
    """
    mean, std = _stats(latents, family)
    return (latents.to(mean.dtype) * std + mean).to(latents.dtype)  # (B, C, ...)


# --- where the constants come from, and where pipelines apply them ---------------------------------------


@dataclass(frozen=True)
class VaeConstants:
    """A family's latent scaling constants with their upstream provenance."""

    family: str
    """The family's key in :data:`~infralens.families.LATENT_FAMILIES`."""
    scaling: LatentScaling
    """The values (pass it to :func:`~infralens.diffusion.normalize_latents`)."""
    diffusers_source: str | None
    """``file:line`` in diffusers 0.42.1 that holds the values, or ``None`` when the wheel has none."""
    in_wheel_as: str
    """How the wheel holds them: ``"default"`` (a class default), ``"docstring"`` (an example only) or ``"absent"``."""
    released_config: str
    """The released VAE config (Hub repository and file) that a pipeline actually loads them from."""
    encode_line: str
    """Where a diffusers 0.42.1 pipeline applies :math:`(z - m)\\,k` after ``vae.encode``."""
    decode_line: str
    """Where a diffusers 0.42.1 pipeline applies :math:`\\tilde z / k + m` before ``vae.decode``."""


VAE_CONSTANTS: Mapping[str, VaeConstants] = MappingProxyType(
    {
        name: VaeConstants(name, fam.scaling, **dataclasses.asdict(fam.scaling_source))
        for name, fam in LATENT_FAMILIES.items()
        if fam.scaling_source is not None
    }
)
"""Scaling constants with their sources (diffusers 0.42.1): a read-only view of the family records.

``sd`` and ``wan2.1`` are class defaults of ``AutoencoderKL`` and
``AutoencoderKLWan``; ``sdxl`` and ``flux`` appear in the wheel only as examples
in a docstring (the values a pipeline uses come from the released config);
``sd3``'s ``scaling_factor`` and ``shift_factor`` are in no file of the wheel,
only in the released config. ``tox -e upstream`` reads every ``file:line`` and
runs the pipelines' encode and decode lines on the same tensors.
"""


def get_vae_constants(family: str) -> VaeConstants:
    """Look a family's constants up by name; an unknown name raises ``ValueError`` listing the known ones.

    >>> get_vae_constants("sd3").scaling.shift_factor
    0.0609
    """
    try:
        return VAE_CONSTANTS[family]
    except (KeyError, TypeError):
        known = ", ".join(map(repr, VAE_CONSTANTS))
        raise ValueError(f"family must be one of {known}, e.g. family='sd'; got {family!r}") from None
