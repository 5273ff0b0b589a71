r"""Where each family's latent scaling constants come from, and where a pipeline applies them.

The values themselves are :class:`~infralens.diffusion.LatentScaling` records
(one source of truth: :data:`~infralens.diffusion.LATENT_SCALING`, plus SD3
here). This module adds their provenance: the file and line of diffusers
0.42.1 that holds each value, or the released config that is the only place it
lives, and the lines where the pipelines apply it. Every pipeline uses the same
affine pair, written with a scale :math:`k` and a shift :math:`m` per channel:

.. math:: \tilde z = (z - m)\,k \quad\text{(after encode)}, \qquad z = \tilde z / k + m \quad\text{(before decode)}

For one ``scaling_factor`` (and FLUX.1's and SD3's ``shift_factor``) :math:`k`
and :math:`m` are the same for every channel; Wan 2.1 has
:math:`m_c = \mu_c` and :math:`k_c = 1/\sigma_c` per channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from .latent_scaling import LATENT_SCALING, LatentScaling


@dataclass(frozen=True)
class VaeConstants:
    """A family's latent scaling constants with their upstream provenance."""

    family: str
    """The family's key in :data:`~infralens.diffusion.LATENT_FAMILIES`."""
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


_P = "pipelines/"

VAE_CONSTANTS: dict[str, VaeConstants] = {
    "sd": VaeConstants(
        "sd",
        LATENT_SCALING["sd"],
        "models/autoencoders/autoencoder_kl.py:90",
        "default",
        "stable-diffusion-v1-5/stable-diffusion-v1-5 vae/config.json",
        _P + "stable_diffusion/pipeline_stable_diffusion_img2img.py:771",
        _P + "stable_diffusion/pipeline_stable_diffusion.py:1085",
    ),
    "sdxl": VaeConstants(
        "sdxl",
        LATENT_SCALING["sdxl"],
        "utils/remote_utils.py:225",
        "docstring",
        "stabilityai/stable-diffusion-xl-base-1.0 vae/config.json",
        _P + "stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py:751",
        _P + "stable_diffusion_xl/pipeline_stable_diffusion_xl.py:1287",
    ),
    "sd3": VaeConstants(
        "sd3",
        LatentScaling(scaling_factor=1.5305, shift_factor=0.0609),
        None,
        "absent",
        "stabilityai/stable-diffusion-3-medium-diffusers vae/config.json",
        _P + "stable_diffusion_3/pipeline_stable_diffusion_3_img2img.py:702",
        _P + "stable_diffusion_3/pipeline_stable_diffusion_3.py:1141",
    ),
    "flux": VaeConstants(
        "flux",
        LATENT_SCALING["flux"],
        "utils/remote_utils.py:226",
        "docstring",
        "black-forest-labs/FLUX.1-dev vae/config.json",
        _P + "flux/pipeline_flux_img2img.py:474",
        _P + "flux/pipeline_flux.py:962",
    ),
    "wan2.1": VaeConstants(
        "wan2.1",
        LATENT_SCALING["wan2.1"],
        "models/autoencoders/autoencoder_kl_wan.py:990",
        "default",
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers vae/config.json",
        _P + "wan/pipeline_wan_i2v.py:462",
        _P + "wan/pipeline_wan.py:672",
    ),
}
"""Scaling constants of the image families and Wan 2.1, with sources (checked against diffusers 0.42.1).

``sd`` and ``wan2.1`` are class defaults of ``AutoencoderKL`` and
``AutoencoderKLWan``; ``sdxl`` and ``flux`` appear in the wheel only as examples
in a docstring (the values a pipeline uses come from the released config);
``sd3``'s ``scaling_factor=1.5305`` and ``shift_factor=0.0609`` are in no file
of the wheel, only in the released config. ``tests/upstream`` reads every
``file:line`` above and fails if the value or the formula is not there.
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
