"""Model families and released models: one record each, read by every other package.

A family record holds what a family's VAE and denoiser share (latent channels
and factors, normalisation constants with their upstream sources, the patch,
DiffSynth-Studio's sigma template and pipeline defaults, the versions checked);
a model record holds what belongs to one checkpoint (width, depth, heads).
"""

from .records import (
    CHECKED_AGAINST,
    LATENT_FAMILIES,
    MODELS,
    Family,
    FlowTemplate,
    LatentScaling,
    ModelSpec,
    ScalingSource,
    get_family,
    get_model,
)

__all__ = [
    "CHECKED_AGAINST",
    "LATENT_FAMILIES",
    "MODELS",
    "Family",
    "FlowTemplate",
    "LatentScaling",
    "ModelSpec",
    "ScalingSource",
    "get_family",
    "get_model",
]
