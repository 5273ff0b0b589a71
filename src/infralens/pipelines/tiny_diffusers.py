"""Tiny random diffusers pipelines, built from configs in code: the real classes, a few kilobytes of weights.

Labs that read diffusers' own code (how a pipeline is saved, loaded, swapped,
offloaded, adapted) run it on these: ``StableDiffusionPipeline``,
``StableDiffusionXLPipeline``, ``FluxPipeline``, ``WanPipeline`` and an SD3
transformer whose every component is the upstream class at a toy size, with a
word-level tokenizer the pipelines accept in place of CLIP's and T5's. Nothing
is downloaded. diffusers, transformers and tokenizers are imported when a
builder is called, so the rest of :mod:`infralens.pipelines` does not need them
(``pip install diffusers transformers tokenizers``).
"""

from __future__ import annotations

import importlib

import torch

WORDS = tuple("a red fox in snow blue car at night cat dog photo of the".split())
"""The tokenizer's vocabulary besides ``<pad>``, ``<unk>`` and ``</s>``."""

SD15_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
"""The ``DDIMScheduler`` settings of SD 1.5's ``scheduler/scheduler_config.json`` (not the class defaults)."""


def _need(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"this builder runs the real {name}: pip install diffusers transformers tokenizers") from None


def tiny_tokenizer(max_length: int = 16):
    """A word-level fast tokenizer over a dozen words (``WORDS``), padded to ``max_length`` like CLIP's."""
    tokenizers, transformers = _need("tokenizers"), _need("transformers")
    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>", model_max_length=max_length
    )


def tiny_clip(hidden: int = 16, projection: bool = False):
    """A two-layer CLIP text encoder of width ``hidden`` (with a projection, as SDXL's second encoder)."""
    transformers = _need("transformers")
    config = transformers.CLIPTextConfig(
        hidden_size=hidden, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2, vocab_size=100,
        max_position_embeddings=16, projection_dim=16, bos_token_id=0, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    cls = transformers.CLIPTextModelWithProjection if projection else transformers.CLIPTextModel
    return cls(config).eval()


def tiny_kl_vae(latent_channels: int = 4, sample_size: int = 32, levels: int = 2):
    """An ``AutoencoderKL`` of ``levels`` blocks: factor ``2 ** (levels - 1)``, tiling above ``sample_size`` pixels."""
    diffusers = _need("diffusers")
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(8,) * levels,
        layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, norm_num_groups=4, sample_size=sample_size,
    ).eval()  # fmt: skip


def tiny_unet(cross_attention_dim: int = 16, heads: int = 4, **kwargs):
    """A two-level ``UNet2DConditionModel`` on 4-channel latents (its ``attention_head_dim`` is the head count)."""
    diffusers = _need("diffusers")
    args = dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=heads, norm_num_groups=4,
    )  # fmt: skip
    return diffusers.UNet2DConditionModel(**(args | kwargs)).eval()


def tiny_sd_pipeline(*, vae: bool = False, scheduler=None, seed: int = 0):
    """``StableDiffusionPipeline`` of a tiny CLIP, UNet and (with ``vae=True``) VAE; DDIM with SD 1.5's settings.

    :param vae: include a one-level ``AutoencoderKL`` (factor 1) so the pipeline can decode.
    :param scheduler: a scheduler object; default ``DDIMScheduler(**SD15_SCHEDULER)``.
    :param seed: seeds the random weights.
    """
    diffusers = _need("diffusers")
    torch.manual_seed(seed)
    pipe = diffusers.StableDiffusionPipeline(
        vae=tiny_kl_vae(levels=1) if vae else None, text_encoder=tiny_clip(), tokenizer=tiny_tokenizer(),
        unet=tiny_unet(), scheduler=scheduler or diffusers.DDIMScheduler(**SD15_SCHEDULER), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_pipeline(seed: int = 0):
    """``StableDiffusionXLPipeline``: two tiny CLIPs (the second with a projection), a UNet with time ids, no VAE."""
    diffusers = _need("diffusers")
    torch.manual_seed(seed)
    unet = tiny_unet(
        cross_attention_dim=32, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 16,
    )  # fmt: skip
    tok = tiny_tokenizer()
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=None, text_encoder=tiny_clip(), text_encoder_2=tiny_clip(projection=True), tokenizer=tok,
        tokenizer_2=tok, unet=unet, scheduler=diffusers.EulerDiscreteScheduler(),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_flux_transformer(guidance_embeds: bool = True):
    """A one-double-block, one-single-block ``FluxTransformer2DModel`` on 4-channel latents packed 2x2."""
    diffusers = _need("diffusers")
    return diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, pooled_projection_dim=16, axes_dims_rope=(2, 2, 4), guidance_embeds=guidance_embeds,
    ).eval()  # fmt: skip


def tiny_flux_pipeline(seed: int = 0):
    """``FluxPipeline`` with the guidance embedded (as FLUX.1-dev): tiny CLIP and T5 encoders, no VAE."""
    diffusers, transformers = _need("diffusers"), _need("transformers")
    torch.manual_seed(seed)
    t5 = transformers.T5EncoderModel(
        transformers.T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    ).eval()
    tok = tiny_tokenizer()
    pipe = diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=tiny_clip(), tokenizer=tok,
        text_encoder_2=t5, tokenizer_2=tok, transformer=tiny_flux_transformer(),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_wan_transformer(text_dim: int = 16, layers: int = 1):
    """A ``WanTransformer3DModel`` with 2 heads of 8 on 4-channel latents, patch (1, 2, 2)."""
    diffusers = _need("diffusers")
    return diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
        text_dim=text_dim, freq_dim=16, ffn_dim=32, num_layers=layers, rope_max_seq_len=32,
    ).eval()  # fmt: skip


def tiny_wan_pipeline(seed: int = 0, **kwargs):
    """``WanPipeline``: tiny UMT5 encoder and transformer, no VAE; ``kwargs``: ``transformer_2``, ``boundary_ratio``."""
    diffusers, transformers = _need("diffusers"), _need("transformers")
    torch.manual_seed(seed)
    te = transformers.UMT5EncoderModel(
        transformers.UMT5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    ).eval()
    pipe = diffusers.WanPipeline(
        tokenizer=tiny_tokenizer(), text_encoder=te, vae=None,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=tiny_wan_transformer(), **kwargs,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd3_transformer():
    """A one-block ``SD3Transformer2DModel`` on 4-channel 8x8 latents, patch 2."""
    diffusers = _need("diffusers")
    return diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=12, caption_projection_dim=16, pooled_projection_dim=8, out_channels=4,
        pos_embed_max_size=16,
    ).eval()  # fmt: skip
