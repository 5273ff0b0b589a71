"""Diffusion formulas and shapes: schedules, the forward process, flow matching, guidance, latents.

Everything a page of the diffuser and diffsynth tracks computes is importable
from here; the modules behind it are organised one concept each.
"""

from .conditioning import (
    AdaLNZero,
    CrossAttention,
    modulate,
    patch_token_count,
    patchify,
    timestep_features,
    unpatchify,
)
from .flow import flow_euler_step, flow_interpolate, flow_target, shift_sigmas
from .flow_sampling import flow_sample
from .flow_schedules import FLOW_TEMPLATES, flow_sigmas
from .forward import add_noise, predict_x0_from_eps, predict_x0_from_v, v_target
from .gaussian_flow import GaussianVelocity
from .guidance import StepCost, cfg_combine, guided_prediction, step_cost
from .latent_scaling import LATENT_SCALING, LatentScaling, denormalize_latents, normalize_latents
from .latents import (
    LATENT_FAMILIES,
    LatentFamily,
    flux_pack,
    flux_unpack,
    get_family,
    latent_frames,
    latent_shape,
)
from .resolution_shift import dynamic_shift
from .sampling import (
    PREDICTION_TYPES,
    StepOutput,
    ddim_step,
    ddpm_posterior,
    ddpm_step,
    predict_epsilon,
    predict_x0,
)
from .schedules import SCHEDULES, alphas_cumprod, make_betas, rescale_zero_terminal_snr, snr
from .timesteps import (
    TIMESTEP_SPACINGS,
    euler_sigmas,
    flow_match_sigmas,
    inference_timesteps,
    scale_model_input,
)
from .tiny_denoiser import TinyDenoiser
from .tiny_dit import TinyDiT
from .tiny_vae import DiagonalGaussian, TinyAutoencoderKL
from .vae_compression import compression_ratio
from .vae_constants import VAE_CONSTANTS, VaeConstants, get_vae_constants

__all__ = [
    "FLOW_TEMPLATES",
    "LATENT_FAMILIES",
    "LATENT_SCALING",
    "PREDICTION_TYPES",
    "SCHEDULES",
    "TIMESTEP_SPACINGS",
    "VAE_CONSTANTS",
    "AdaLNZero",
    "CrossAttention",
    "DiagonalGaussian",
    "GaussianVelocity",
    "LatentFamily",
    "LatentScaling",
    "StepCost",
    "StepOutput",
    "TinyAutoencoderKL",
    "TinyDenoiser",
    "TinyDiT",
    "VaeConstants",
    "add_noise",
    "alphas_cumprod",
    "cfg_combine",
    "compression_ratio",
    "ddim_step",
    "ddpm_posterior",
    "ddpm_step",
    "denormalize_latents",
    "dynamic_shift",
    "euler_sigmas",
    "flow_euler_step",
    "flow_interpolate",
    "flow_match_sigmas",
    "flow_sample",
    "flow_sigmas",
    "flow_target",
    "flux_pack",
    "flux_unpack",
    "get_family",
    "get_vae_constants",
    "guided_prediction",
    "inference_timesteps",
    "latent_frames",
    "latent_shape",
    "make_betas",
    "modulate",
    "normalize_latents",
    "patch_token_count",
    "patchify",
    "predict_epsilon",
    "predict_x0",
    "predict_x0_from_eps",
    "predict_x0_from_v",
    "rescale_zero_terminal_snr",
    "scale_model_input",
    "shift_sigmas",
    "snr",
    "step_cost",
    "timestep_features",
    "unpatchify",
    "v_target",
]
