"""Adapters on a frozen denoiser: LoRA, ControlNet-style residuals, multiple controls."""

__all__: list[str] = []
