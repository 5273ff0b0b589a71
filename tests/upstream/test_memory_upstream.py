"""infralens.memory against the real diffusers and DiffSynth-Studio.

* the parameter counts behind the offload tables, against the classes
  instantiated on the meta device (no weights, no memory);
* the blended VAE tiling, against ``AutoencoderKL`` with ``enable_tiling()``;
* the names and defaults of diffusers' memory knobs the pages cite (DiffSynth's
  VRAM management is run in ``test_diffsynth_vram_upstream.py``).
"""

from __future__ import annotations

import inspect

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers import AutoencoderKL, AutoencoderKLWan, DiffusionPipeline, WanTransformer3DModel  # noqa: E402

from infralens.memory import (  # noqa: E402
    WAN21_VAE_PARAMS,
    blended_tiled_decode,
    umt5_encoder_layer_params,
    wan_dit_layer_params,
)

from ._diffsynth import load_module  # noqa: E402
from ._diffsynth_wan import diffsynth_module  # noqa: E402

pytestmark = pytest.mark.upstream


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("diffusers_kwargs", "ours_kwargs"),
    [
        ({}, {}),  # the defaults: Wan 2.1 14B
        (  # Wan 2.1 1.3B (DiffSynth-Studio's config for it, below)
            {"num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960, "num_layers": 30},
            {"dim": 1536, "ffn_dim": 8960, "num_layers": 30},
        ),
    ],
)
def test_wan_transformer_units(diffusers_kwargs, ours_kwargs):
    with torch.device("meta"):
        model = WanTransformer3DModel(**diffusers_kwargs)
    units = wan_dit_layer_params(**ours_kwargs)
    embeddings = count(model.patch_embedding) + count(model.condition_embedder)
    head = count(model.proj_out) + model.scale_shift_table.numel() + count(model.norm_out)
    assert units == (embeddings, *[count(b) for b in model.blocks], head)
    assert sum(units) == count(model)


def test_wan_vae_params():
    with torch.device("meta"):
        assert count(AutoencoderKLWan()) == WAN21_VAE_PARAMS


def test_umt5_encoder_units():
    transformers = pytest.importorskip("transformers")
    config = transformers.UMT5Config(
        vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
        relative_attention_num_buckets=32, feed_forward_proj="gated-gelu",
    )  # fmt: skip
    with torch.device("meta"):
        model = transformers.UMT5EncoderModel(config)
    units = umt5_encoder_layer_params()
    assert units[0] == model.shared.weight.numel()
    assert list(units[1:-1]) == [count(b) for b in model.encoder.block]
    assert units[-1] == count(model.encoder.final_layer_norm)
    assert sum(units) == count(model)


def test_defaults_are_diffsynth_wan21_14b():
    """Our defaults are DiffSynth-Studio's Wan2.1-T2V-14B transformer config; its WanTextEncoder() counts as ours."""
    configs = load_module("configs/model_configs.py").wan_series
    dit = next(
        c["extra_kwargs"]
        for c in configs
        if c["model_name"] == "wan_video_dit" and c.get("extra_kwargs", {}).get("dim") == 5120
        and not c["extra_kwargs"].get("has_image_input")
    )  # fmt: skip
    ours = inspect.signature(wan_dit_layer_params).parameters
    for theirs, name in [("dim", "dim"), ("ffn_dim", "ffn_dim"), ("num_layers", "num_layers"),
                         ("in_dim", "in_channels"), ("out_dim", "out_channels"), ("text_dim", "text_dim"),
                         ("freq_dim", "freq_dim")]:  # fmt: skip
        assert dit[theirs] == ours[name].default, theirs
    assert tuple(dit["patch_size"]) == ours["patch_size"].default
    assert dit["num_heads"] * 128 == dit["dim"]  # 40 heads of 128, as in diffusers
    one_b = next(c["extra_kwargs"] for c in configs if c.get("extra_kwargs", {}).get("dim") == 1536)
    assert (one_b["ffn_dim"], one_b["num_layers"]) == (8960, 30)

    text = diffsynth_module("models.wan_video_text_encoder")
    with torch.device("meta"):
        encoder = text.WanTextEncoder()  # DiffSynth's defaults: the UMT5-XXL encoder Wan uses
    units = umt5_encoder_layer_params()
    assert units[0] == encoder.token_embedding.weight.numel()
    assert list(units[1:-1]) == [count(b) for b in encoder.blocks]  # one relative-position table per block
    assert sum(units) == count(encoder)


def tiny_kl_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4, sample_size=32,
    ).eval()  # fmt: skip


@pytest.mark.parametrize(
    "height",
    [
        40,  # tile rows start at 0, 12, 24, 36: the last is 4 latent rows high, 8 pixels = the blend
        38,  # the last row is 2 high: 4 pixels, shorter than the blend, which the column blend ignores
        12,  # one row of tiles: blended along the columns only
    ],
)
def test_blended_tiling_is_diffusers_tiled_decode(height):
    vae = tiny_kl_vae()
    assert (vae.tile_latent_min_size, vae.tile_sample_min_size, vae.tile_overlap_factor) == (16, 32, 0.25)
    z = torch.randn(1, 4, height, 52)
    with torch.no_grad():
        vae.enable_tiling()  # the knob: decode goes through tiled_decode for latents over 16 x 16
        theirs = vae.decode(z).sample
        ours = blended_tiled_decode(lambda t: vae.decoder(vae.post_quant_conv(t)), z, tile=16, overlap_factor=0.25)
        vae.disable_tiling()
        full = vae.decode(z).sample
    assert ours.shape == theirs.shape == full.shape == (1, 3, 2 * height, 104)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(theirs, full, atol=1e-3)  # GroupNorm and attention see one tile: not exact


def test_slicing_decodes_one_sample_at_a_time():
    vae = tiny_kl_vae()
    z = torch.randn(3, 4, 8, 8)
    calls = []
    handle = vae.decoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        vae.enable_slicing()
        sliced = vae.decode(z).sample
        vae.disable_slicing()
        whole = vae.decode(z).sample
    handle.remove()
    assert calls == [1, 1, 1, 3]
    assert torch.allclose(sliced, whole, atol=1e-5)


def test_memory_knobs_exist_where_the_pages_say():
    for name in ("enable_model_cpu_offload", "enable_sequential_cpu_offload", "enable_group_offload",
                 "enable_attention_slicing"):  # fmt: skip
        assert callable(getattr(DiffusionPipeline, name)), name
    for name in ("enable_vae_tiling", "enable_vae_slicing"):  # moved to the VAE: pipe.vae.enable_tiling()
        assert not hasattr(DiffusionPipeline, name), name
    for name in ("enable_tiling", "enable_slicing"):
        assert callable(getattr(AutoencoderKL, name)) and callable(getattr(AutoencoderKLWan, name))
    assert callable(WanTransformer3DModel.set_attention_backend)
    with torch.device("meta"):
        wan_vae = AutoencoderKLWan()
    tiles = (wan_vae.tile_sample_min_height, wan_vae.tile_sample_min_width)
    strides = (wan_vae.tile_sample_stride_height, wan_vae.tile_sample_stride_width)
    assert (tiles, strides) == ((256, 256), (192, 192))  # "256-pixel tiles every 192 pixels" on diffuser Lab 10
    from diffusers.models.attention_dispatch import AttentionBackendName, attention_backend

    assert callable(attention_backend)
    assert {"native", "flash", "_native_math", "sage", "xformers"} <= {b.value for b in AttentionBackendName}
    from diffusers import WanPipeline

    assert WanPipeline.model_cpu_offload_seq == "text_encoder->transformer->transformer_2->vae"
    params = inspect.signature(WanPipeline.__call__).parameters
    assert (params["num_inference_steps"].default, params["guidance_scale"].default) == (50, 5.0)
