"""Lab 05 facts against diffusers: the constants, what pipelines hand to ``vae.decode``, the posterior, the factor.

* class defaults are what ``AutoencoderKL`` / ``AutoencoderKLWan`` build with; one citation check
  reads where SDXL's and FLUX.1's values sit (docstrings) and that SD3's are in no file of the wheel;
* the SD, FLUX.1 and Wan pipelines, run on tiny random modules, hand ``vae.decode`` exactly
  ``denormalize_latents`` of their final latents (scale; scale and shift; per-channel statistics);
* tiling acts only above ``sample_size`` and is never exact; an fp16 decoder overflows where fp32 does
  not (``force_upcast``); ``AutoencoderKL`` floors odd sizes without an error;
* ``DiagonalGaussian.sample`` equals diffusers' ``DiagonalGaussianDistribution.sample``
  for the same moments and generator;
* ``TinyAutoencoderKL`` and a tiny diffusers ``AutoencoderKL`` with the same
  block count give the same latent shape, and the pipelines'
  ``vae_scale_factor`` rule gives the same factor.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from infralens.diffusion import VAE_CONSTANTS, denormalize_latents  # noqa: E402
from infralens.families import LatentScaling  # noqa: E402
from infralens.nets import DiagonalGaussian, TinyAutoencoderKL  # noqa: E402

from ._tiny import tiny_flux_pipeline, tiny_sd_pipeline  # noqa: E402
from .test_guidance_upstream import tiny_wan  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
ROOT = Path(diffusers.__file__).parent


def _line(cited: str) -> str:
    path, number = cited.rsplit(":", 1)
    return (ROOT / path).read_text().splitlines()[int(number) - 1]


def test_the_checked_version():
    assert diffusers.__version__ == "0.42.1"


def test_class_defaults():
    """SD's scaling factor and Wan 2.1's per-channel statistics are what the classes build with by default."""
    assert VAE_CONSTANTS["sd"].scaling.scaling_factor == diffusers.AutoencoderKL().config.scaling_factor == 0.18215
    wan = inspect.signature(diffusers.AutoencoderKLWan.__init__).parameters
    ours = VAE_CONSTANTS["wan2.1"].scaling
    assert list(ours.latents_mean) == wan["latents_mean"].default
    assert list(ours.latents_std) == wan["latents_std"].default


def test_citation_vae_constants_provenance():
    """Citation check (reads upstream source text): SDXL's and FLUX.1's constants sit in the wheel only as
    docstring examples, on the lines VAE_CONSTANTS cites, and SD3's appear in no file of the wheel."""
    lines = {name: _line(VAE_CONSTANTS[name].diffusers_source).strip() for name in ("sdxl", "flux")}
    assert lines == {"sdxl": "- SD XL: 0.13025", "flux": "- Flux: 0.3611"}
    path, number = VAE_CONSTANTS["flux"].diffusers_source.rsplit(":", 1)
    text = (ROOT / path).read_text().splitlines()
    shift = next(t.strip() for t in text[int(number) : int(number) + 6] if "Flux:" in t)
    assert shift == "- Flux: 0.1159" == f"- Flux: {VAE_CONSTANTS['flux'].scaling.shift_factor}"
    c = VAE_CONSTANTS["sd3"]
    assert c.diffusers_source is None and c.in_wheel_as == "absent"
    hits = [p for p in ROOT.rglob("*.py") if "1.5305" in p.read_text() or "0.0609" in p.read_text()]
    assert hits == []


def decoded_input(pipe, **call):
    """Run ``pipe`` to pixels and to latents with the same seed; return (what vae.decode received, final latents)."""
    seen, original = {}, pipe.vae.decode

    def spy(z, *args, **kwargs):
        seen["z"] = z.detach().clone()
        return original(z, *args, **kwargs)

    pipe.vae.decode = spy
    pipe(**call, output_type="pt", generator=torch.Generator().manual_seed(0))
    pipe.vae.decode = original
    final = pipe(**call, output_type="latent", generator=torch.Generator().manual_seed(0))[0]
    return seen["z"], final


def test_sd_pipeline_decodes_z_over_k():
    """StableDiffusionPipeline hands vae.decode the final latents divided by scaling_factor (no shift)."""
    pipe = tiny_sd_pipeline()
    z, final = decoded_input(
        pipe, prompt_embeds=torch.randn(1, 5, 12), guidance_scale=1.0, num_inference_steps=2, height=16, width=16
    )
    k = pipe.vae.config.scaling_factor
    assert k == 0.18215
    assert torch.allclose(z, denormalize_latents(final, LatentScaling(scaling_factor=k)), atol=1e-6)


def test_flux_pipeline_decodes_z_over_k_plus_shift():
    """FluxPipeline unpacks, then hands vae.decode z / k + shift: ``denormalize_latents`` with FLUX.1's constants."""
    pipe = tiny_flux_pipeline()
    z, final = decoded_input(
        pipe,
        prompt_embeds=torch.randn(1, 6, 32),
        pooled_prompt_embeds=torch.randn(1, 32),
        num_inference_steps=2,
        height=32,
        width=32,
    )
    final = pipe._unpack_latents(final, 32, 32, pipe.vae_scale_factor)
    ours = denormalize_latents(final, VAE_CONSTANTS["flux"].scaling)
    assert torch.allclose(z, ours, atol=1e-5)
    assert not torch.allclose(z, final / pipe.vae.config.scaling_factor, atol=1e-3)  # the shift matters


def test_wan_pipeline_decodes_per_channel_and_reads_its_factors_from_the_vae_config():
    """WanPipeline hands vae.decode z * std + mean per channel (the Wan 2.1 defaults), and takes its spatial
    and temporal factors from the VAE's config fields, not from a block count."""
    pipe = tiny_wan()
    assert pipe.vae_scale_factor_spatial == pipe.vae.config.scale_factor_spatial == 8
    assert pipe.vae_scale_factor_temporal == pipe.vae.config.scale_factor_temporal == 4
    # the same three down-sampling stages with other config fields: the pipeline follows the fields
    odd = diffusers.AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        scale_factor_spatial=16,
        scale_factor_temporal=2,
    )
    other = diffusers.WanPipeline(**{**pipe.components, "vae": odd})
    assert (other.vae_scale_factor_spatial, other.vae_scale_factor_temporal) == (16, 2)
    z, final = decoded_input(
        pipe,
        prompt_embeds=torch.randn(1, 6, 32),
        guidance_scale=1.0,
        num_inference_steps=2,
        height=16,
        width=16,
        num_frames=5,
    )
    ours = denormalize_latents(final, VAE_CONSTANTS["wan2.1"].scaling)
    assert torch.allclose(z.float(), ours, atol=1e-5)


def small_vae(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return diffusers.AutoencoderKL(
            block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=4,
            **kwargs,
        ).eval()


def test_tiling_acts_only_above_sample_size_and_is_never_exact():
    """enable_tiling(): a latent no larger than sample_size / 2**(blocks-1) decodes bit for bit as untiled; a
    larger one differs, also deep inside the first tile, far from any blend band (GroupNorm and the mid-block
    attention see one tile at a time)."""
    vae = small_vae(sample_size=32)
    assert vae.tile_latent_min_size == 16
    results = {}
    for side in (16, 40):
        z = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(side))
        with torch.no_grad():
            vae.disable_tiling()
            plain = vae.decode(z).sample
            vae.enable_tiling()
            tiled = vae.decode(z).sample
        results[side] = (plain - tiled).abs()
    assert results[16].max() == 0
    assert results[40][..., 4:12, 4:12].max() > 0.01  # rows/cols 4..12: inside tile one, before the blend starts


def test_vae_tiling_and_slicing_live_on_the_vae_not_the_pipeline():
    for name in ("enable_vae_tiling", "enable_vae_slicing"):
        assert not hasattr(diffusers.StableDiffusionPipeline, name)
    for name in ("enable_tiling", "enable_slicing"):
        assert hasattr(diffusers.AutoencoderKL, name)


def test_fp16_decoder_overflows_where_fp32_does_not_and_force_upcast_is_the_default():
    """A decoder whose inner activations pass 65504 (as SDXL's VAE's do) decodes to inf/nan in fp16 and to finite
    values in fp32; AutoencoderKL's force_upcast defaults to True, which tells SDXL's pipeline to decode in fp32."""
    assert diffusers.AutoencoderKL().config.force_upcast is True
    vae = small_vae()
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(1e5)
        z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        f32 = vae.decode(z).sample
        f16 = vae.half().decode(z.half()).sample
    assert torch.isfinite(f32).all() and f32.abs().max() < 10
    assert not torch.isfinite(f16).all()


def test_autoencoder_kl_floors_odd_sizes_silently():
    """diffusers' AutoencoderKL checks no size: a 100x100 image encodes to 12x12 and decodes to 96x96."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        vae = diffusers.AutoencoderKL(
            block_out_channels=(8, 8, 8, 8),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            norm_num_groups=4,
        ).eval()
    with torch.no_grad():
        z = vae.encode(torch.rand(1, 3, 100, 100) * 2 - 1).latent_dist.mode()
        x = vae.decode(z).sample
    assert tuple(z.shape) == (1, 4, 12, 12) and tuple(x.shape) == (1, 3, 96, 96)
    with pytest.raises(ValueError, match="multiple"):
        TinyAutoencoderKL(latent_channels=4).encode(torch.rand(1, 3, 100, 100))


def test_sample_matches_diffusers():
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    moments = torch.randn(2, 8, 4, 4) * 3
    ours, theirs = DiagonalGaussian(moments), DiagonalGaussianDistribution(moments)
    assert torch.equal(ours.mean, theirs.mean) and torch.equal(ours.std, theirs.std)
    assert torch.equal(ours.mode(), theirs.mode())
    a = ours.sample(torch.Generator().manual_seed(5))
    b = theirs.sample(torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("blocks", [(8, 16), (8, 16, 32, 32)])
def test_spatial_factor_matches_autoencoder_kl(blocks):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = diffusers.AutoencoderKL(
            block_out_channels=blocks,
            down_block_types=("DownEncoderBlock2D",) * len(blocks),
            up_block_types=("UpDecoderBlock2D",) * len(blocks),
            latent_channels=4,
            norm_num_groups=8,
        ).eval()
    ours = TinyAutoencoderKL(latent_channels=4, block_out_channels=blocks)
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        theirs = real.encode(x).latent_dist.mean
    assert theirs.shape == ours.encode(x).mean.shape
    assert ours.spatial_factor == 2 ** (len(real.config.block_out_channels) - 1)


@pytest.mark.parametrize(
    "name", ["StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusion3Pipeline", "FluxPipeline"]
)
def test_pipelines_take_vae_scale_factor_from_the_block_count(name):
    """The SD, SDXL, SD3 and FLUX.1 pipelines compute vae_scale_factor = 2 ** (blocks - 1) from the VAE they are
    given: 2 for a two-block VAE, 16 for a five-block one (not a fixed 8)."""
    cls = getattr(diffusers, name)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    empty = {p: None for p in params if p not in ("requires_safety_checker", "force_zeros_for_empty_prompt")}
    empty.pop("add_watermarker", None)
    assert cls(**{**empty, "vae": small_vae()}).vae_scale_factor == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        five = diffusers.AutoencoderKL(
            block_out_channels=(4,) * 5,
            down_block_types=("DownEncoderBlock2D",) * 5,
            up_block_types=("UpDecoderBlock2D",) * 5,
            norm_num_groups=4,
        )
    assert cls(**{**empty, "vae": five}).vae_scale_factor == 16


def test_retrieve_latents_samples_by_default_and_takes_the_mean_with_argmax():
    """Image-to-image pipelines' ``retrieve_latents``: ``sample(generator)`` by default, ``mode()`` with argmax."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

    vae = small_vae()
    with torch.no_grad():
        out = vae.encode(torch.rand(1, 3, 32, 32) * 2 - 1)
    drawn = retrieve_latents(out, generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn, out.latent_dist.sample(torch.Generator().manual_seed(3)))
    assert torch.equal(retrieve_latents(out, sample_mode="argmax"), out.latent_dist.mode())
    assert not torch.equal(drawn, out.latent_dist.mode())
