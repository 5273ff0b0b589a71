"""Adapters on a frozen denoiser: LoRA, ControlNet-style residuals, multiple controls, Wan's VACE branch."""

from .controlnet import ControlNetConditioningEmbedding, MultiControlNet, TinyControlNet
from .lora import LoRALinear, lora_param_count
from .multi_control import (
    ControlWindow,
    combine_control_residuals,
    control_keep,
    control_schedule,
    diffsynth_control_active,
    format_control_schedule,
)
from .vace import inject_vace_hints, vace_context, vace_mask_latents

__all__ = [
    "ControlNetConditioningEmbedding",
    "ControlWindow",
    "LoRALinear",
    "MultiControlNet",
    "TinyControlNet",
    "combine_control_residuals",
    "control_keep",
    "control_schedule",
    "diffsynth_control_active",
    "format_control_schedule",
    "inject_vace_hints",
    "lora_param_count",
    "vace_context",
    "vace_mask_latents",
]
