"""Adapters on a frozen denoiser: LoRA, ControlNet-style residuals, multiple controls."""

from .controlnet import ControlNetConditioningEmbedding, MultiControlNet, TinyControlNet, TinyUNet
from .lora import LoRALinear, lora_param_count
from .multi_control import (
    ControlWindow,
    combine_control_residuals,
    control_keep,
    control_schedule,
    diffsynth_control_active,
    format_control_schedule,
)

__all__ = [
    "ControlNetConditioningEmbedding",
    "ControlWindow",
    "LoRALinear",
    "MultiControlNet",
    "TinyControlNet",
    "TinyUNet",
    "combine_control_residuals",
    "control_keep",
    "control_schedule",
    "diffsynth_control_active",
    "format_control_schedule",
    "lora_param_count",
]
