"""The stand-in networks: tiny, randomly initialised models with the wiring of the real ones.

Every lab that needs a denoiser, a VAE, a text encoder or a UNet takes it from
here. One block design (:class:`DiTBlock`) serves both DiTs, one sinusoidal
embedding (:func:`timestep_features`) serves every denoiser, and every model's
weights are fixed by a seed without touching the caller's random state
(:func:`infralens.core.seeded`). Nothing is downloaded.
"""

from .blocks import AdaLNZero, CrossAttention, DiTBlock, SelfAttention, modulate
from .denoiser import TinyDenoiser
from .dit import DiTBackbone, TinyDiT, TinyVideoDiT
from .embeddings import timestep_features
from .gaussian import GaussianVelocity
from .patches import patch_token_count, patchify, unpatchify
from .text import TinyTextEncoder, tokenize
from .unet import TinyUNet, UNetEncoder, check_unet_input
from .vae import DiagonalGaussian, TinyAutoencoderKL, TinyConvDecoder
from .video_vae import CausalConv3d, TinyCausalVideoVAE, channel_rms_norm

__all__ = [
    "AdaLNZero",
    "CausalConv3d",
    "CrossAttention",
    "DiTBackbone",
    "DiTBlock",
    "DiagonalGaussian",
    "GaussianVelocity",
    "SelfAttention",
    "TinyAutoencoderKL",
    "TinyCausalVideoVAE",
    "TinyConvDecoder",
    "TinyDenoiser",
    "TinyDiT",
    "TinyTextEncoder",
    "TinyUNet",
    "TinyVideoDiT",
    "UNetEncoder",
    "channel_rms_norm",
    "check_unet_input",
    "modulate",
    "patch_token_count",
    "patchify",
    "timestep_features",
    "tokenize",
    "unpatchify",
]
