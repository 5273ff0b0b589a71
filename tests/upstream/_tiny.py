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


def tiny_sd_pipeline():
    """``StableDiffusionPipeline`` of :func:`tiny_sd_unet`, a one-level VAE and ``DDIMScheduler()``; no text encoder."""
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
        text_encoder=None,
        tokenizer=None,
        unet=unet,
        scheduler=diffusers.DDIMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
