"""Tiny random diffusers pipelines (infralens.pipelines' builders) and a counter of what runs in them.

Shared by the checks of diffuser Labs 06-10 and the Calculators page.
"""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from infralens.pipelines import (
    tiny_clip,
    tiny_flux_pipeline,
    tiny_kl_vae,
    tiny_sd3_transformer,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
    tiny_tokenizer,
    tiny_unet,
    tiny_wan_pipeline,
)
from infralens.pipelines import tiny_flux_transformer as flux_transformer
from infralens.pipelines import tiny_wan_transformer as wan_transformer

__all__ = [
    "BUILD",
    "count_work",
    "flux_transformer",
    "sd3_transformer",
    "sd_pipeline",
    "tiny_clip",
    "tiny_kl_vae",
    "tiny_tokenizer",
    "tiny_unet",
    "wan_transformer",
]

sd3_transformer = tiny_sd3_transformer


def sd_pipeline(*, vae=None, scheduler=None, seed: int = 0):
    """``tiny_sd_pipeline`` with a given VAE object (or none) and scheduler (default: ``DDIMScheduler()``)."""
    import diffusers

    parts = tiny_sd_pipeline(scheduler=scheduler or diffusers.DDIMScheduler(), seed=seed).components
    pipe = diffusers.StableDiffusionPipeline(**(parts | {"vae": vae}), requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


CALLS = {  # the extra arguments each pipeline needs at this size
    "StableDiffusionPipeline": dict(height=64, width=64),
    "StableDiffusionXLPipeline": dict(height=64, width=64),
    "FluxPipeline": dict(height=64, width=64, max_sequence_length=16),
    "WanPipeline": dict(height=32, width=32, num_frames=5, max_sequence_length=16),
}
ENCODERS = {
    "StableDiffusionPipeline": ("text_encoder",),
    "StableDiffusionXLPipeline": ("text_encoder", "text_encoder_2"),
    "FluxPipeline": ("text_encoder", "text_encoder_2"),
    "WanPipeline": ("text_encoder",),
}
BUILD = {
    "StableDiffusionPipeline": sd_pipeline,
    "StableDiffusionXLPipeline": tiny_sdxl_pipeline,
    "FluxPipeline": tiny_flux_pipeline,
    "WanPipeline": tiny_wan_pipeline,
}


def denoiser(pipe):
    return pipe.unet if hasattr(pipe, "unet") else pipe.transformer


def count_work(pipe, **call) -> tuple[int, list[int]]:
    """Run ``pipe(prompt="a red fox in snow", ...)`` 3 steps; return (text-encoder calls, denoiser batch per call)."""
    name = type(pipe).__name__
    encoder_calls, batches = [], []
    hooks = [getattr(pipe, e).register_forward_hook(lambda *a: encoder_calls.append(1)) for e in ENCODERS[name]]

    def record(module, args, kwargs):
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        batches.append(int(x.shape[0]))

    hooks.append(denoiser(pipe).register_forward_pre_hook(record, with_kwargs=True))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe(prompt="a red fox in snow", num_inference_steps=3, output_type="latent",
             generator=torch.Generator().manual_seed(0), **CALLS[name], **call)  # fmt: skip
    for h in hooks:
        h.remove()
    return len(encoder_calls), batches
