"""Diffusion formulas and shapes: schedules, the forward process, flow matching, guidance, latents.

Everything a page of the diffuser and diffsynth tracks computes is importable
from here; the modules behind it are organised one concept each.
"""

from .flow import flow_euler_step, flow_interpolate, flow_target, shift_sigmas
from .flow_schedules import FLOW_TEMPLATES, flow_sigmas
from .forward import add_noise, predict_x0_from_eps, predict_x0_from_v, v_target
from .guidance import StepCost, cfg_combine, guided_prediction, step_cost
from .latents import (
    LATENT_FAMILIES,
    LatentFamily,
    flux_pack,
    flux_unpack,
    get_family,
    latent_frames,
    latent_shape,
)
from .schedules import SCHEDULES, alphas_cumprod, make_betas, rescale_zero_terminal_snr, snr
from .tiny_denoiser import TinyDenoiser

__all__ = [
    "FLOW_TEMPLATES",
    "LATENT_FAMILIES",
    "SCHEDULES",
    "LatentFamily",
    "StepCost",
    "TinyDenoiser",
    "add_noise",
    "alphas_cumprod",
    "cfg_combine",
    "flow_euler_step",
    "flow_interpolate",
    "flow_sigmas",
    "flow_target",
    "flux_pack",
    "flux_unpack",
    "get_family",
    "guided_prediction",
    "latent_frames",
    "latent_shape",
    "make_betas",
    "predict_x0_from_eps",
    "predict_x0_from_v",
    "rescale_zero_terminal_snr",
    "shift_sigmas",
    "snr",
    "step_cost",
    "v_target",
]
