"""Cross-check ``infralens.diffusion`` latent shapes against the real diffusers VAEs.

Every VAE here is a *tiny* randomly initialised instance of the diffusers class a
family uses: few feature channels and one layer per block, but the same number of
down-sampling stages, the same temporal compression and the same latent channel
count as the released model, so its shape behaviour is the released model's.
Nothing is downloaded. Run with ``tox -e upstream``.

Facts and sources are in the upstream report; the short version (diffusers 0.37.0
and 0.42.1 behave identically for everything tested here):

* image VAEs (``AutoencoderKL``, 3 down-samples) floor ``H/8``; decode gives ``8*floor(H/8)``.
* Wan 2.1/2.2 and HunyuanVideo encode ``1 + (F-1)//4`` latent frames and silently drop
  the trailing ``(F-1) % 4`` frames; only ``F = 1 + 4k`` decodes back to ``F`` frames.
* CogVideoX also encodes ``1 + (F-1)//4`` latent frames, but its decoder (2 latent frames
  per chunk) returns ``1 + 4(L-1)`` frames only for an odd latent count ``L``; an even
  ``L`` decodes to ``4L`` frames. So ``F = 1 + 8k`` and ``F = 8k`` round-trip, while
  ``F = 5, 13, 21 ...`` come back 3 frames longer. InfraLens therefore accepts ``1 + 8k``
  for CogVideoX; ``8k`` round-trips too (no causal first frame) and is the one case the
  library rejects although the VAE could represent it (``test_cogvideox_8k_frames_round_trip``).
* LTX-Video encodes ``1 + (F-1)//8``; the 0.9.0 VAE truncates other ``F``, the 0.9.5-style
  VAE raises for them.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from types import SimpleNamespace

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from infralens.diffusion import LATENT_FAMILIES, flux_pack, flux_unpack, latent_shape  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    # diffusers and transformers may announce deprecations on import or construction;
    # they say nothing about shapes, and the project's pytest turns warnings into errors.
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

IMAGE = ("sd", "sdxl", "sd3", "flux")
VIDEO = ("wan2.1", "wan2.2", "hunyuanvideo", "cogvideox", "ltxvideo")

# Latent channels of the RELEASED VAEs, with where each number comes from.
RELEASED_CHANNELS = {
    # AutoencoderKL default latent_channels=4 (models/autoencoders/autoencoder_kl.py);
    # UNet2DConditionModel default in_channels=4. SD 1.x/2.x and SDXL VAEs both ship 4.
    "sd": 4,
    "sdxl": 4,
    # SD3Transformer2DModel default in_channels=16 (models/transformers/transformer_sd3.py);
    # the SD3/SD3.5 vae/config.json has latent_channels=16.
    "sd3": 16,
    # FluxTransformer2DModel default in_channels=64 = 16 channels * 2x2 packing, and
    # FluxPipeline uses num_channels_latents = transformer.config.in_channels // 4.
    "flux": 16,
    # AutoencoderKLWan default z_dim=16 (models/autoencoders/autoencoder_kl_wan.py).
    "wan2.1": 16,
    # Wan2.2-TI2V-5B VAE: z_dim=48, patch_size=2, scale_factor_spatial=16, is_residual=True
    # (diffusers' scripts/convert_wan_to_diffusers.py, vae22_diffusers_config; not in the wheel).
    "wan2.2": 48,
    # AutoencoderKLHunyuanVideo default latent_channels=16.
    "hunyuanvideo": 16,
    # AutoencoderKLCogVideoX default latent_channels=16; CogVideoXTransformer3DModel in_channels=16.
    "cogvideox": 16,
    # AutoencoderKLLTXVideo default latent_channels=128; LTXVideoTransformer3DModel in_channels=128.
    "ltxvideo": 128,
}

# (spatial, temporal) compression of the released VAEs: class defaults / pipeline code.
RELEASED_FACTORS = {
    "sd": (8, None),
    "sdxl": (8, None),
    "sd3": (8, None),
    "flux": (8, None),
    "wan2.1": (8, 4),
    "wan2.2": (16, 4),
    "hunyuanvideo": (8, 4),
    "cogvideox": (8, 4),
    "ltxvideo": (32, 8),
}


# ---------------------------------------------------------------------------
# Tiny VAEs. Structure (number of blocks / which ones down-sample in time) follows
# the released configs; widths are cut to 8 so a forward pass takes milliseconds.
# ---------------------------------------------------------------------------


@functools.cache
def tiny_vae(family: str, variant: str = "") -> torch.nn.Module:
    torch.manual_seed(0)
    d = diffusers
    if family in IMAGE:
        # Four DownEncoderBlock2D -> three stride-2 stages -> 8x. SD3/FLUX ship without quant convs.
        quant = family in ("sd", "sdxl")
        vae = d.AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8,) * 4,
            layers_per_block=1,
            norm_num_groups=4,
            latent_channels=RELEASED_CHANNELS[family],
            use_quant_conv=quant,
            use_post_quant_conv=quant,
        )
    elif family == "wan2.1":
        # Default dim_mult [1, 2, 4, 4] and temperal_downsample [False, True, True]: 8x, 4x.
        vae = d.AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1)
    elif family == "wan2.2":
        # TI2V-5B layout: 2x2 pixel patchify (3 -> 12 channels), residual blocks, then the 8x/4x
        # encoder, so 16x spatially. latents_mean/std only need the right length.
        vae = d.AutoencoderKLWan(
            base_dim=8,
            decoder_base_dim=8,
            z_dim=48,
            num_res_blocks=1,
            in_channels=12,
            out_channels=12,
            patch_size=2,
            is_residual=True,
            scale_factor_spatial=16,
            scale_factor_temporal=4,
            latents_mean=[0.0] * 48,
            latents_std=[1.0] * 48,
        )
    elif family == "hunyuanvideo":
        vae = d.AutoencoderKLHunyuanVideo(
            block_out_channels=(8,) * 4, layers_per_block=1, norm_num_groups=4, latent_channels=16
        )
    elif family == "cogvideox":
        vae = d.AutoencoderKLCogVideoX(
            block_out_channels=(8,) * 4, layers_per_block=1, norm_num_groups=4, latent_channels=16
        )
    elif family == "ltxvideo" and variant in ("", "0.9.0"):
        # Class defaults are the LTX-Video 0.9.0 VAE: 4x4 patchify + 3 spatio-temporal stages.
        vae = d.AutoencoderKLLTXVideo(
            block_out_channels=(8,) * 4,
            decoder_block_out_channels=(8,) * 4,
            layers_per_block=(1,) * 5,
            decoder_layers_per_block=(1,) * 5,
            latent_channels=128,
        )
    elif family == "ltxvideo" and variant == "0.9.5":
        # 0.9.5+ VAE: down-sampling stages spatial, temporal, spatiotemporal, spatiotemporal.
        # (The released decoder is timestep-conditioned; that does not touch shapes.)
        vae = d.AutoencoderKLLTXVideo(
            block_out_channels=(8,) * 5,
            decoder_block_out_channels=(8, 16, 32),
            down_block_types=("LTXVideo095DownBlock3D",) * 4,
            layers_per_block=(1,) * 5,
            decoder_layers_per_block=(1,) * 4,
            spatio_temporal_scaling=(True,) * 4,
            decoder_spatio_temporal_scaling=(True,) * 3,
            decoder_inject_noise=(False,) * 4,
            downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
            upsample_residual=(True,) * 3,
            upsample_factor=(2, 2, 2),
            timestep_conditioning=False,
            spatial_compression_ratio=32,
            temporal_compression_ratio=8,
            latent_channels=128,
        )
    else:
        raise KeyError((family, variant))
    return vae.eval()


def pixels(family: str, height: int, width: int, frames: int | None = None, batch: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(height * 1009 + width * 31 + (frames or 0))
    if frames is None:
        return torch.randn(batch, 3, height, width, generator=gen)
    return torch.randn(batch, 3, frames, height, width, generator=gen)  # (B, C, F, H, W)


def encode(family: str, x: torch.Tensor, variant: str = "") -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiny_vae(family, variant).encode(x).latent_dist.mode()


def decode(family: str, z: torch.Tensor, variant: str = "") -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiny_vae(family, variant).decode(z).sample


def round_trip(family: str, x: torch.Tensor, variant: str = "") -> tuple[int, ...] | None:
    """Shape of decode(encode(x)), or None when the real VAE refuses the input."""
    try:
        z = encode(family, x, variant)
    except (RuntimeError, ValueError):
        return None
    return tuple(decode(family, z, variant).shape)


# ---------------------------------------------------------------------------
# The constants
# ---------------------------------------------------------------------------


def test_every_family_is_covered():
    assert set(LATENT_FAMILIES) == set(RELEASED_CHANNELS)


@pytest.mark.parametrize("family", list(RELEASED_CHANNELS))
def test_channels_are_the_released_ones(family):
    assert LATENT_FAMILIES[family].channels == RELEASED_CHANNELS[family]


@pytest.mark.parametrize("family", list(RELEASED_FACTORS))
def test_factors_are_the_released_ones(family):
    fam = LATENT_FAMILIES[family]
    spatial, temporal = RELEASED_FACTORS[family]
    assert (fam.spatial_factor, fam.temporal_factor, fam.is_video) == (spatial, temporal, temporal is not None)


@pytest.mark.parametrize(
    "family, attrs",
    [
        ("wan2.1", {"scale_factor_spatial": 8, "scale_factor_temporal": 4, "z_dim": 16}),
        ("hunyuanvideo", {"latent_channels": 16}),
        ("cogvideox", {"latent_channels": 16, "temporal_compression_ratio": 4}),
        ("ltxvideo", {"latent_channels": 128, "patch_size": 4}),
        ("sd", {"latent_channels": 4}),
    ],
)
def test_class_defaults_agree(family, attrs):
    """The diffusers class defaults (each class's first released model) say what our table says."""
    params = inspect.signature(type(tiny_vae(family)).__init__).parameters
    assert {name: params[name].default for name in attrs} == attrs
    if family == "ltxvideo":
        # spatial = patch_size * 2 ** sum(spatio_temporal_scaling), temporal = patch_size_t * 2 ** sum(...)
        scaling = params["spatio_temporal_scaling"].default
        fam = LATENT_FAMILIES[family]
        assert fam.spatial_factor == params["patch_size"].default * 2 ** sum(scaling)
        assert fam.temporal_factor == params["patch_size_t"].default * 2 ** sum(scaling)


# ---------------------------------------------------------------------------
# latent_shape == the real encoder's output shape
# ---------------------------------------------------------------------------

IMAGE_CASES = [(64, 64, 1), (32, 48, 2), (48, 16, 1), (16, 64, 3)]

VIDEO_CASES = [
    # family, H, W, F, B, variant
    ("wan2.1", 32, 32, 1, 1, ""),
    ("wan2.1", 32, 32, 5, 1, ""),
    ("wan2.1", 16, 24, 13, 2, ""),
    ("wan2.1", 48, 64, 9, 1, ""),
    ("wan2.2", 32, 32, 1, 1, ""),
    ("wan2.2", 32, 48, 5, 2, ""),
    ("wan2.2", 16, 32, 13, 1, ""),
    ("hunyuanvideo", 32, 32, 1, 1, ""),
    ("hunyuanvideo", 32, 48, 5, 2, ""),
    ("hunyuanvideo", 16, 16, 21, 1, ""),  # > 16 frames: the frame-tiled encoder path
    ("hunyuanvideo", 16, 16, 33, 1, ""),
    ("cogvideox", 32, 32, 1, 1, ""),
    ("cogvideox", 32, 40, 9, 2, ""),
    ("cogvideox", 16, 16, 25, 1, ""),
    ("cogvideox", 16, 16, 17, 1, ""),
    ("cogvideox", 16, 24, 49, 1, ""),
    ("ltxvideo", 64, 64, 1, 1, "0.9.0"),
    ("ltxvideo", 32, 96, 9, 2, "0.9.0"),
    ("ltxvideo", 64, 32, 17, 1, "0.9.0"),
    ("ltxvideo", 64, 64, 9, 1, "0.9.5"),
    ("ltxvideo", 32, 64, 25, 1, "0.9.5"),
]


@pytest.mark.parametrize("family", IMAGE)
@pytest.mark.parametrize("height, width, batch", IMAGE_CASES)
def test_image_latent_shape_matches_encoder(family, height, width, batch):
    z = encode(family, pixels(family, height, width, batch=batch))
    ours = latent_shape(family, height=height, width=width, batch=batch)
    assert len(ours) == z.ndim == 4  # (B, C, H', W')
    assert ours == tuple(z.shape)


@pytest.mark.parametrize("family, height, width, frames, batch, variant", VIDEO_CASES)
def test_video_latent_shape_matches_encoder(family, height, width, frames, batch, variant):
    z = encode(family, pixels(family, height, width, frames, batch), variant)
    ours = latent_shape(family, height=height, width=width, frames=frames, batch=batch)
    assert len(ours) == z.ndim == 5  # (B, C, F', H', W')
    assert ours[2:] == tuple(z.shape[2:])
    assert ours == tuple(z.shape)  # the tiny VAEs carry the released channel counts


def test_every_video_family_has_cases():
    assert {case[0] for case in VIDEO_CASES} == set(VIDEO)


# ---------------------------------------------------------------------------
# What latent_shape accepts decodes back to the same size; what it rejects does not.
# ---------------------------------------------------------------------------

VALID_ROUND_TRIPS = [
    ("wan2.1", 32, 32, 1, ""),
    ("wan2.1", 32, 32, 9, ""),
    ("wan2.2", 32, 48, 5, ""),
    ("wan2.2", 32, 32, 9, ""),
    ("hunyuanvideo", 16, 16, 9, ""),
    ("hunyuanvideo", 16, 16, 17, ""),
    ("cogvideox", 16, 16, 9, ""),
    ("cogvideox", 16, 16, 17, ""),
    ("cogvideox", 16, 16, 25, ""),
    ("ltxvideo", 64, 64, 9, "0.9.0"),
    ("ltxvideo", 32, 64, 17, "0.9.5"),
]


@pytest.mark.parametrize("family, height, width, frames, variant", VALID_ROUND_TRIPS)
def test_accepted_sizes_round_trip(family, height, width, frames, variant):
    latent_shape(family, height=height, width=width, frames=frames)  # accepted: no ValueError
    assert round_trip(family, pixels(family, height, width, frames), variant) == (1, 3, frames, height, width)


@pytest.mark.parametrize("family", IMAGE)
@pytest.mark.parametrize("height, width", [(64, 64), (32, 48)])
def test_accepted_image_sizes_round_trip(family, height, width):
    assert round_trip(family, pixels(family, height, width)) == (1, 3, height, width)


REJECTED_FRAMES = [
    ("wan2.1", 16, 16, 2, ""),
    ("wan2.1", 16, 16, 8, ""),
    ("wan2.1", 16, 16, 80, ""),  # 20 latent frames -> 77 frames back
    ("wan2.2", 32, 32, 6, ""),
    ("hunyuanvideo", 16, 16, 4, ""),
    ("hunyuanvideo", 16, 16, 20, ""),
    ("cogvideox", 16, 16, 5, ""),  # 2 latent frames decode to 8 frames
    ("cogvideox", 16, 16, 13, ""),  # 4 latent frames decode to 16 frames
    ("cogvideox", 16, 16, 6, ""),
    ("cogvideox", 16, 16, 10, ""),
    ("cogvideox", 16, 16, 12, ""),
    ("ltxvideo", 32, 32, 5, "0.9.0"),
    ("ltxvideo", 32, 32, 8, "0.9.0"),
    ("ltxvideo", 32, 32, 12, "0.9.0"),
    ("ltxvideo", 32, 32, 16, "0.9.5"),  # this VAE raises
]


@pytest.mark.parametrize("family, height, width, frames, variant", REJECTED_FRAMES)
def test_rejected_frames_do_not_round_trip(family, height, width, frames, variant):
    with pytest.raises(ValueError):
        latent_shape(family, height=height, width=width, frames=frames)
    back = round_trip(family, pixels(family, height, width, frames), variant)
    assert back is None or back[2] != frames  # refused, or a different frame count comes back


@pytest.mark.parametrize("frames", [8, 16])
def test_cogvideox_8k_frames_round_trip(frames):
    """CogVideoX encodes F = 8k frames to 2k latent frames and decodes exactly 8k back (no causal first frame);
    latent_shape deliberately keeps the causal 1 + 8k rule and refuses them."""
    with pytest.raises(ValueError):
        latent_shape("cogvideox", height=16, width=16, frames=frames)
    assert round_trip("cogvideox", pixels("cogvideox", 16, 16, frames)) == (1, 3, frames, 16, 16)


REJECTED_SIZES = [
    # family, H, W  (image families: floor(H/8); decode gives 8*floor(H/8))
    ("sd", 60, 64),
    ("sdxl", 64, 36),
    ("sd3", 17, 32),
    ("flux", 44, 64),
    # video families (frames valid, sizes not)
    ("wan2.1", 60, 64),  # floor -> 56
    ("wan2.1", 33, 32),  # floor -> 32
    ("wan2.2", 40, 64),  # multiple of 8, not 16: the residual down-sampler raises
    ("wan2.2", 24, 32),
    ("wan2.2", 33, 32),  # odd: patchify raises ValueError
    ("hunyuanvideo", 60, 64),  # ceil -> 64
    ("hunyuanvideo", 33, 32),  # ceil -> 40
    ("cogvideox", 60, 64),  # floor -> 56
    ("ltxvideo", 48, 64),  # ceil -> 64 (0.9.0)
    ("ltxvideo", 66, 64),  # not a multiple of the 4x4 patch: raises
]


@pytest.mark.parametrize("family, height, width", REJECTED_SIZES)
def test_rejected_sizes_do_not_round_trip(family, height, width):
    fam = LATENT_FAMILIES[family]
    frames = 1 + fam.temporal_factor if fam.is_video else None
    with pytest.raises(ValueError):
        latent_shape(family, height=height, width=width, frames=frames)
    back = round_trip(family, pixels(family, height, width, frames))
    assert back is None or back[-2:] != (height, width)


def test_ltx_095_rejects_what_latent_shape_rejects():
    """The 0.9.5-style LTX VAE raises (rather than truncating) for F != 1 + 8k and H != 32k."""
    for frames, height in [(10, 32), (9, 48)]:
        with pytest.raises(ValueError):
            latent_shape("ltxvideo", height=height, width=32, frames=frames)
        assert round_trip("ltxvideo", pixels("ltxvideo", height, 32, frames), "0.9.5") is None


@pytest.mark.parametrize("family", IMAGE)
def test_image_families_refuse_frames(family):
    with pytest.raises(ValueError):
        latent_shape(family, height=64, width=64, frames=1)


# ---------------------------------------------------------------------------
# Pipelines: prepare_latents formulas agree with latent_shape on valid sizes
# (called on a stand-in `self` carrying only the attributes the method reads).
# ---------------------------------------------------------------------------


def _stand_in(**attrs):
    return SimpleNamespace(scheduler=SimpleNamespace(init_noise_sigma=1.0), **attrs)


def _prepare(pipeline_cls, owner, **kwargs):
    common = {"dtype": torch.float32, "device": torch.device("cpu"), "generator": None, "latents": None}
    return pipeline_cls.prepare_latents(owner, **common, **kwargs)


@pytest.mark.parametrize(
    "family, cls_name",
    [("sd", "StableDiffusionPipeline"), ("sdxl", "StableDiffusionXLPipeline"), ("sd3", "StableDiffusion3Pipeline")],
)
def test_image_pipelines_prepare_latents(family, cls_name):
    cls = getattr(diffusers, cls_name)
    C = RELEASED_CHANNELS[family]
    got = _prepare(cls, _stand_in(vae_scale_factor=8), batch_size=2, num_channels_latents=C, height=1024, width=768)
    assert tuple(got.shape) == latent_shape(family, height=1024, width=768, batch=2)


@pytest.mark.parametrize(
    "family, cls_name, height, width, frames",
    [
        ("wan2.1", "WanPipeline", 480, 832, 81),
        ("wan2.2", "WanPipeline", 704, 1280, 121),
        ("hunyuanvideo", "HunyuanVideoPipeline", 720, 1280, 129),
    ],
)
def test_video_pipelines_prepare_latents(family, cls_name, height, width, frames):
    fam = LATENT_FAMILIES[family]
    owner = _stand_in(vae_scale_factor_spatial=fam.spatial_factor, vae_scale_factor_temporal=fam.temporal_factor)
    got = _prepare(
        getattr(diffusers, cls_name),
        owner,
        batch_size=1,
        num_channels_latents=fam.channels,
        height=height,
        width=width,
        num_frames=frames,
    )
    assert tuple(got.shape) == latent_shape(family, height=height, width=width, frames=frames)


def test_cogvideox_pipeline_puts_frames_before_channels():
    """CogVideoXPipeline keeps its latents as (B, F', C, H', W'); the VAE (and latent_shape) use (B, C, F', H', W')."""
    owner = _stand_in(vae_scale_factor_spatial=8, vae_scale_factor_temporal=4)
    got = _prepare(
        diffusers.CogVideoXPipeline, owner, batch_size=1, num_channels_latents=16, num_frames=49, height=480, width=720
    )
    B, C, F, H, W = latent_shape("cogvideox", height=480, width=720, frames=49)
    assert tuple(got.shape) == (B, F, C, H, W)


def test_ltx_pipeline_token_count():
    """LTXPipeline.prepare_latents returns packed tokens (B, F'*H'*W', C) with patch sizes 1."""
    owner = _stand_in(
        vae_spatial_compression_ratio=32,
        vae_temporal_compression_ratio=8,
        transformer_spatial_patch_size=1,
        transformer_temporal_patch_size=1,
        _pack_latents=diffusers.LTXPipeline._pack_latents,
    )
    got = _prepare(
        diffusers.LTXPipeline, owner, batch_size=1, num_channels_latents=128, height=512, width=704, num_frames=161
    )
    B, C, F, H, W = latent_shape("ltxvideo", height=512, width=704, frames=161)
    assert tuple(got.shape) == (B, F * H * W, C)


# ---------------------------------------------------------------------------
# FLUX packing
# ---------------------------------------------------------------------------

FLUX = diffusers.FluxPipeline


@pytest.mark.parametrize("batch, height, width", [(1, 64, 64), (2, 128, 64), (1, 48, 80), (3, 16, 16)])
def test_flux_pack_matches_pipeline(batch, height, width):
    C = LATENT_FAMILIES["flux"].channels
    h, w = height // 8, width // 8
    z = torch.randn(batch, C, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    theirs = FLUX._pack_latents(z, batch, C, h, w)
    ours = flux_pack(z)
    assert ours.shape == (batch, (h // 2) * (w // 2), 4 * C)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("batch, height, width", [(1, 64, 64), (2, 128, 64), (1, 48, 80)])
def test_flux_unpack_matches_pipeline(batch, height, width):
    C = LATENT_FAMILIES["flux"].channels
    n = (height // 16) * (width // 16)
    tokens = torch.randn(batch, n, 4 * C, generator=torch.Generator().manual_seed(n))
    theirs = FLUX._unpack_latents(tokens, height, width, 8)
    ours = flux_unpack(tokens, height, width)
    assert ours.shape == (batch, C, height // 8, width // 8)
    assert torch.equal(ours, theirs)


def test_flux_pack_order_in_words():
    """Token t = y*(W'/2) + x holds feature 4c + 2i + j = latent[c, 2y+i, 2x+j]."""
    C, h, w = 16, 4, 6
    z = torch.arange(C * h * w, dtype=torch.float32).view(1, C, h, w)
    theirs = FLUX._pack_latents(z, 1, C, h, w)
    for y in range(h // 2):
        for x in range(w // 2):
            for c in (0, 5, C - 1):
                for i in (0, 1):
                    for j in (0, 1):
                        assert theirs[0, y * (w // 2) + x, 4 * c + 2 * i + j] == z[0, c, 2 * y + i, 2 * x + j]
    assert torch.equal(flux_pack(z), theirs)


@pytest.mark.parametrize("height", [1000, 1032, 72])
def test_flux_sizes_not_multiple_of_16(height):
    """The pipeline floors H to a multiple of 16 (with a warning); flux_unpack refuses instead."""
    with pytest.raises(ValueError):
        flux_unpack(torch.zeros(1, 4, 64), height, 32)
    floored = 16 * (height // 16)
    tokens = torch.zeros(1, (floored // 16) * 2, 64)
    unpacked = FLUX._unpack_latents(tokens, height, 32, 8)
    assert unpacked.shape[-2] * 8 == floored != height


# ---------------------------------------------------------------------------
# Outside the rules (DiffSynth Lab 03): leftover frames, Wan 2.2 sizes, patch sizes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "variant", "frames", "changed"),
    [
        ("wan2.1", "", 9, "none"),  # the 3 extra frames are dropped
        ("ltxvideo", "0.9.0", 9, "none"),
        ("cogvideox", "", 9, "all"),  # the remainder goes into the first frame batch; group norms see all frames
        ("cogvideox", "", 17, "all"),  # two frame batches of 8: still every latent frame
        ("hunyuanvideo", "", 9, "all"),
    ],
)
def test_leftover_frames_change_which_latent_frames(family, variant, frames, changed):
    """Encode F and F + 3 frames (the same first F): which latent frames do the 3 leftover frames change?"""
    size = 64 if family == "ltxvideo" else (16 if frames > 9 else 32)
    x = pixels(family, size, size, frames + 3)
    short, long = encode(family, x[:, :, :frames], variant), encode(family, x, variant)
    assert short.shape == long.shape  # same latent frame count: the extra frames are not a latent frame
    moved = [i for i in range(short.shape[2]) if not torch.allclose(short[:, :, i], long[:, :, i], atol=1e-5)]
    assert moved == ([] if changed == "none" else list(range(short.shape[2])))


def test_diffusers_wan_pipeline_rounds_wan22_sizes_down_to_multiples_of_32():
    """With the Wan 2.2 VAE (16x) and 2x2 patches, WanPipeline turns 720 into 704, with a logged warning."""
    import logging

    torch.manual_seed(0)
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48,
        text_dim=32, freq_dim=32, ffn_dim=48, num_layers=1,
    ).eval()  # fmt: skip
    pipe = diffusers.WanPipeline(
        tokenizer=None, text_encoder=None, vae=tiny_vae("wan2.2"),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=transformer,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    seen = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("diffusers.pipelines.wan.pipeline_wan")  # diffusers' loggers do not propagate
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = pipe(prompt_embeds=torch.randn(1, 512, 32), height=720, width=1280, num_frames=5,
                       num_inference_steps=1, guidance_scale=1.0, output_type="latent").frames  # fmt: skip
    finally:
        logger.removeHandler(handler)
    assert tuple(out.shape[-2:]) == (704 // 16, 1280 // 16)
    assert any("Adjusting (720, 1280) -> (704, 1280)" in m for m in seen)
    with pytest.raises(ValueError, match="nearest valid: 704 or 736"):
        from infralens.calculators import latent_tokens

        latent_tokens("wan2.2", height=720, width=1280, frames=121)


@pytest.mark.parametrize(
    ("family", "cls_name", "tokens"),
    [
        ("wan2.1", "WanTransformer3DModel", 21 * 30 * 52),
        ("hunyuanvideo", "HunyuanVideoTransformer3DModel", 21 * 30 * 52),
        ("cogvideox", "CogVideoXTransformer3DModel", 21 * 30 * 52),
        ("ltxvideo", "LTXVideoTransformer3DModel", 11 * 15 * 26),  # patch 1: every latent cell is a token
    ],
)
def test_video_transformer_patch_sizes_give_the_token_counts(family, cls_name, tokens):
    """The transformer's own patch sizes (class defaults: each family's first release) and the 480x832x81 tokens."""
    from infralens.calculators import latent_tokens

    defaults = inspect.signature(getattr(diffusers, cls_name).__init__).parameters
    patch = defaults["patch_size"].default
    if isinstance(patch, int):
        patch_t = defaults["patch_size_t"].default if "patch_size_t" in defaults else None
        patch = (patch_t or 1, patch, patch)
    assert tuple(patch) == LATENT_FAMILIES[family].patch
    assert latent_tokens(family, height=480, width=832, frames=81).tokens == tokens


@pytest.mark.parametrize(
    ("family", "variant", "height", "decoded"),
    [
        ("wan2.1", "", 60, 56),  # down
        ("cogvideox", "", 60, 56),  # down
        ("hunyuanvideo", "", 60, 64),  # up
        ("ltxvideo", "0.9.0", 48, 64),  # up
        ("ltxvideo", "0.9.0", 66, None),  # not a multiple of the 4x4 patchify: raises
        ("wan2.2", "", 40, None),  # a multiple of 8, not of 16: raises
    ],
)
def test_heights_off_the_grid_round_down_up_or_raise(family, variant, height, decoded):
    frames = 1 + LATENT_FAMILIES[family].temporal_factor
    width = 64
    back = round_trip(family, pixels(family, height, width, frames), variant)
    assert (back[3] if back else None) == decoded
