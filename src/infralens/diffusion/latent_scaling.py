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

The values are per model, taken from the released VAEs as shipped in diffusers
0.42.1 and DiffSynth-Studio 2.1.12 (sources in :data:`LATENT_SCALING`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._args import compute_dtype


@dataclass(frozen=True)
class LatentScaling:
    """The normalisation constants of one family's VAE, in diffusers' config names."""

    scaling_factor: float | None = None
    """One factor for all channels (``vae.config.scaling_factor``), or ``None``."""
    shift_factor: float | None = None
    """Subtracted before scaling (``vae.config.shift_factor``; FLUX.1), or ``None``."""
    latents_mean: tuple[float, ...] | None = None
    r""":math:`\mu_c`, one per channel (``vae.config.latents_mean``; Wan), or ``None``."""
    latents_std: tuple[float, ...] | None = None
    r""":math:`\sigma_c`, one per channel (``vae.config.latents_std``; Wan), or ``None``."""

    def __post_init__(self):
        scalar, per_channel = self.scaling_factor is not None, self.latents_mean is not None
        if scalar == per_channel:
            raise ValueError(
                "give either scaling_factor (e.g. scaling_factor=0.18215) or latents_mean and latents_std "
                f"(one value per channel), not {'both' if scalar else 'neither'}"
            )
        if scalar and not self.scaling_factor > 0:
            raise ValueError(f"scaling_factor must be > 0, e.g. scaling_factor=0.18215; got {self.scaling_factor}")
        if per_channel and (self.latents_std is None or len(self.latents_std) != len(self.latents_mean)):
            n = len(self.latents_mean)
            raise ValueError(
                f"latents_std must have one value per channel like latents_mean ({n}); got {self.latents_std}"
            )
        if per_channel and not all(s > 0 for s in self.latents_std):
            raise ValueError(f"latents_std must be > 0 in every channel, e.g. (1.0, 2.0); got {self.latents_std}")

    @property
    def per_channel(self) -> bool:
        """``True`` for per-channel statistics, ``False`` for one scaling factor."""
        return self.latents_mean is not None

    def mean_std(self, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\mu_c, \sigma_c)` as float64 tensors of shape ``(C,)``, whichever convention the family uses.

        :param channels: :math:`C`, the latent's channel count; per-channel
            statistics must have exactly this many values.
        :returns: mean and standard deviation per channel.

        >>> mu, sigma = LATENT_SCALING["sd"].mean_std(4)
        >>> mu.tolist(), sigma.tolist() == [1 / 0.18215] * 4
        ([0.0, 0.0, 0.0, 0.0], True)
        """
        if self.per_channel:
            if len(self.latents_mean) != channels:
                raise ValueError(
                    f"latents have {channels} channels but these statistics have {len(self.latents_mean)}: "
                    f"use the family whose VAE made the latent (e.g. 'wan2.1' for 16 channels)"
                )
            mean = torch.tensor(self.latents_mean, dtype=torch.float64)  # (C,)
            std = torch.tensor(self.latents_std, dtype=torch.float64)  # (C,)
            return mean, std
        shift = 0.0 if self.shift_factor is None else self.shift_factor
        mean = torch.full((channels,), shift, dtype=torch.float64)  # (C,)
        std = torch.full((channels,), 1.0 / self.scaling_factor, dtype=torch.float64)  # (C,)
        return mean, std


_WAN21_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
_WAN21_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip
_WAN22_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
_WAN22_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip

LATENT_SCALING: dict[str, LatentScaling] = {
    "sd": LatentScaling(scaling_factor=0.18215),
    "sdxl": LatentScaling(scaling_factor=0.13025),
    "flux": LatentScaling(scaling_factor=0.3611, shift_factor=0.1159),
    "wan2.1": LatentScaling(latents_mean=_WAN21_MEAN, latents_std=_WAN21_STD),
    "wan2.2": LatentScaling(latents_mean=_WAN22_MEAN, latents_std=_WAN22_STD),
}
"""Normalisation constants by family (the names of :data:`LATENT_FAMILIES`).

Sources, checked by ``tox -e upstream``: ``sd``, diffusers 0.42.1
``AutoencoderKL`` default ``scaling_factor``; ``sdxl``, DiffSynth-Studio 2.1.12
``configs/model_configs.py`` (the SDXL VAE entry); ``flux``, DiffSynth-Studio
``models/flux_vae.py``; ``wan2.1``, diffusers ``AutoencoderKLWan`` defaults and
DiffSynth-Studio ``WanVideoVAE``; ``wan2.2``, DiffSynth-Studio ``WanVideoVAE38``.
"""


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
    mean, std = _resolve(family).mean_std(latents.shape[1])
    view = (1, -1) + (1,) * (latents.ndim - 2)  # (1, C, 1, ...): broadcast over batch, frames, height, width
    return mean.to(latents.device, dtype).reshape(view), std.to(latents.device, dtype).reshape(view)


def normalize_latents(latents: torch.Tensor, family: str | LatentScaling) -> torch.Tensor:
    r"""VAE latent to denoiser latent: :math:`\tilde z_c = (z_c - \mu_c) / \sigma_c` per channel.

    :param latents: :math:`z`, ``(B, C, H, W)`` or ``(B, C, F, H, W)``, as the VAE encoder returns it.
    :param family: a key of :data:`LATENT_SCALING` or a :class:`LatentScaling`.
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
    :param family: a key of :data:`LATENT_SCALING` or a :class:`LatentScaling`.
    :returns: :math:`z`, same shape and dtype.

    >>> z = torch.randn(1, 16, 3, 4, 4)
    >>> back = denormalize_latents(normalize_latents(z, "wan2.1"), "wan2.1")
    >>> torch.allclose(back, z, atol=1e-6)
    True
    """
    mean, std = _stats(latents, family)
    return (latents.to(mean.dtype) * std + mean).to(latents.dtype)  # (B, C, ...)
