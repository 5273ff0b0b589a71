"""Diffusion formulas and shapes: schedules, the forward process, flow matching, guidance, latents.

Everything a page of the diffuser and diffsynth tracks computes is importable
from here; the modules behind it are organised one concept each.
"""

from .experts import EXPERTS, expert_schedule, expert_switch_step
from .flow import (
    FLOW_TEMPLATES,
    dynamic_shift,
    flow_euler_step,
    flow_interpolate,
    flow_match_sigmas,
    flow_sample,
    flow_sigmas,
    flow_target,
    shift_sigmas,
)
from .forward import add_noise, predict_x0_from_eps, predict_x0_from_v, v_target
from .guidance import StepCost, cfg_combine, guided_prediction, step_cost
from .latent_scaling import (
    LATENT_SCALING,
    VAE_CONSTANTS,
    VaeConstants,
    denormalize_latents,
    get_vae_constants,
    mean_std,
    normalize_latents,
)
from .latents import (
    LATENT_FAMILIES,
    compression_ratio,
    flux_pack,
    flux_unpack,
    get_family,
    latent_frames,
    latent_shape,
    pixel_multiple,
)
from .multistep import SOLVERS, flow_multistep_sample, flow_solver_sigmas, solver_orders
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
    inference_timesteps,
    karras_sigmas,
    scale_model_input,
)

__all__ = [
    "EXPERTS",
    "FLOW_TEMPLATES",
    "LATENT_FAMILIES",
    "LATENT_SCALING",
    "PREDICTION_TYPES",
    "SCHEDULES",
    "SOLVERS",
    "TIMESTEP_SPACINGS",
    "VAE_CONSTANTS",
    "StepCost",
    "StepOutput",
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
    "expert_schedule",
    "expert_switch_step",
    "flow_euler_step",
    "flow_interpolate",
    "flow_match_sigmas",
    "flow_multistep_sample",
    "flow_sample",
    "flow_sigmas",
    "flow_solver_sigmas",
    "flow_target",
    "flux_pack",
    "flux_unpack",
    "get_family",
    "get_vae_constants",
    "guided_prediction",
    "inference_timesteps",
    "karras_sigmas",
    "latent_frames",
    "latent_shape",
    "make_betas",
    "mean_std",
    "normalize_latents",
    "pixel_multiple",
    "predict_epsilon",
    "predict_x0",
    "predict_x0_from_eps",
    "predict_x0_from_v",
    "rescale_zero_terminal_snr",
    "scale_model_input",
    "shift_sigmas",
    "snr",
    "solver_orders",
    "step_cost",
    "v_target",
]
