"""The components of some diffusers pipelines, as their constructors name them.

A pipeline's components are the objects its ``__init__`` registers: every
argument without a default, plus those listed in ``_optional_components``
(configuration flags such as ``requires_safety_checker`` are not components).
Pipelines differ in them: the denoiser is a ``unet`` or a ``transformer``,
there are one to three text encoders, and some add an image encoder or a
second transformer.

Read from diffusers 0.42.1 (``inspect.signature(Pipeline.__init__)`` and
``Pipeline._optional_components``); ``tests/upstream`` rereads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# the names in constructor order, as diffusers spells them
_COMPONENTS = {
    "StableDiffusionPipeline": (
        "vae text_encoder tokenizer unet scheduler safety_checker feature_extractor image_encoder"
    ),
    "StableDiffusionXLPipeline": (
        "vae text_encoder text_encoder_2 tokenizer tokenizer_2 unet scheduler image_encoder feature_extractor"
    ),
    "StableDiffusion3Pipeline": (
        "transformer scheduler vae text_encoder tokenizer text_encoder_2 "
        "tokenizer_2 text_encoder_3 tokenizer_3 image_encoder feature_extractor"
    ),
    "FluxPipeline": (
        "scheduler vae text_encoder tokenizer text_encoder_2 tokenizer_2 transformer image_encoder feature_extractor"
    ),
    "WanPipeline": "tokenizer text_encoder vae scheduler transformer transformer_2",
}
DIFFUSERS_COMPONENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {pipeline: tuple(names.split()) for pipeline, names in _COMPONENTS.items()}
)
"""Component names by pipeline class, in constructor order (diffusers 0.42.1).

>>> [name for name in DIFFUSERS_COMPONENTS["FluxPipeline"] if "text_encoder" in name]
['text_encoder', 'text_encoder_2']
"""
