"""Tiny randomly initialised diffusers models shared by the cross-checks (no downloads).

One definition of the small Stable Diffusion UNet and pipeline, so that every
test that compares against "a real tiny StableDiffusionPipeline" compares
against the same one.
"""

from __future__ import annotations

import pytest
import torch


def tiny_sd_unet():
    """A two-level ``UNet2DConditionModel`` on 4-channel 8x8 latents, text width 12, seeded with 0."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=12,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()


def tiny_sd_pipeline(*, text_encoder=None, tokenizer=None):
    """``StableDiffusionPipeline`` of :func:`tiny_sd_unet`, a one-level VAE and ``DDIMScheduler()``.

    No text encoder unless one is given (with its tokenizer): call it with ``prompt_embeds``.
    """
    diffusers = pytest.importorskip("diffusers")
    unet = tiny_sd_unet()
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8,),
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        norm_num_groups=4,
    ).eval()
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=diffusers.DDIMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_flux_pipeline(*, scaling_factor: float = 0.3611, shift_factor: float = 0.1159):
    """``FluxPipeline`` with a one-block guidance-distilled transformer (FLUX.1-dev's layout) and a one-level VAE.

    The VAE has 4 latent channels, packed 2x2 into the transformer's 16 input channels, and FLUX.1's
    scaling and shift factors; the scheduler is FLUX.1's ``FlowMatchEulerDiscreteScheduler`` with dynamic
    shifting. No text encoders: call it with ``prompt_embeds`` (1, L, 32) and ``pooled_prompt_embeds`` (1, 32).
    """
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    ).eval()
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    ).eval()
    pipe = diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True),
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
