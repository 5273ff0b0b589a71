"""Lab 06 against diffusers: components, the loading path, guidance per pipeline, the decode, on tiny modules.

* each pipeline's ``components`` (built with every component ``None``) are
  ``DIFFUSERS_COMPONENTS``; ``TinyDDIMScheduler`` steps as ``DDIMScheduler()``;
* ``save_pretrained`` writes ``model_index.json`` (library and class per
  component, config flags, ``_class_name``); ``from_pretrained`` takes a dtype
  per component; ``from_config`` carries a checkpoint's schedule to another
  scheduler; ``from_pipe`` shares the modules and casts them;
* what guidance costs in SD, SDXL, FLUX and Wan; what ``vae.decode`` receives;
  when Wan's ``transformer_2`` runs; what a wrong text encoder does;
* the Lab 06 starter that reads this path prints what diffusers did.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from infralens.pipelines import (  # noqa: E402
    DIFFUSERS_COMPONENTS,
    SD15_SCHEDULER,
    TinyDDIMScheduler,
    tiny_clip,
    tiny_flux_transformer,
    tiny_kl_vae,
    tiny_sd_pipeline,
    tiny_wan_transformer,
)

from . import _tiny_pipelines as tiny  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]
NONE = dict(safety_checker=None, feature_extractor=None)


def empty(name: str):
    """The pipeline class ``name`` built with every component ``None`` (diffusers registers them all)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = getattr(diffusers, name)
        import inspect

        params = [p for p in list(inspect.signature(cls.__init__).parameters)[1:] if p not in ("kwargs",)]
        args = {p: None for p in params if p in DIFFUSERS_COMPONENTS[name]}
        if "requires_safety_checker" in params:
            args["requires_safety_checker"] = False
        return cls(**args)


@pytest.mark.parametrize("name", list(DIFFUSERS_COMPONENTS))
def test_component_lists(name):
    """``pipe.components``: every ``__init__`` argument without a default, plus ``_optional_components``."""
    assert set(empty(name).components) == set(DIFFUSERS_COMPONENTS[name])


@pytest.mark.parametrize("steps", [1, 4, 10, 50])
def test_ddim_scheduler_matches_diffusers(steps):
    theirs, ours = diffusers.DDIMScheduler(), TinyDDIMScheduler()
    assert theirs.config.clip_sample and theirs.config.set_alpha_to_one and theirs.config.beta_schedule == "linear"
    theirs.set_timesteps(steps)
    ours.set_timesteps(steps)
    assert torch.equal(theirs.timesteps, ours.timesteps)
    torch.manual_seed(steps)
    x = torch.randn(2, 4, 8, 8) * 3
    for t in theirs.timesteps:
        eps = torch.randn_like(x)
        expected = theirs.step(eps, t, x).prev_sample
        assert torch.allclose(ours.step(eps, t, x), expected, atol=1e-5)
        x = expected
    assert theirs.init_noise_sigma == ours.init_noise_sigma


@pytest.mark.parametrize(("levels", "factor"), [(1, 1), (2, 2), (4, 8)])
def test_the_vae_scale_factor_comes_from_the_vae_config(levels, factor):
    """SD's pipelines compute vae_scale_factor = 2 ** (len(block_out_channels) - 1) from the VAE they are given."""
    pipe = tiny.sd_pipeline(vae=tiny_kl_vae(levels=levels))
    assert pipe.vae_scale_factor == factor


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sd")
    tiny_sd_pipeline(vae=True).save_pretrained(folder)
    return folder


def test_model_index_lists_components_and_flags(saved):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["_diffusers_version"] == diffusers.__version__
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    assert index["safety_checker"] == [None, None]  # an absent component is written as [null, null]
    assert index["requires_safety_checker"] is False  # a config flag, not a component: no edges, no wiring
    components = set(DIFFUSERS_COMPONENTS["StableDiffusionPipeline"])
    assert set(index) == components | {"_class_name", "_diffusers_version", "requires_safety_checker"}
    assert {p.name for p in saved.iterdir() if p.is_dir()} == {"scheduler", "text_encoder", "tokenizer", "unet", "vae"}


def test_from_pretrained_takes_a_dtype_per_component_and_deprecates_torch_dtype(saved):
    loaded = diffusers.DiffusionPipeline.from_pretrained(
        saved, dtype={"unet": torch.bfloat16, "default": torch.float32}
    )
    assert type(loaded) is diffusers.StableDiffusionPipeline  # resolved from _class_name
    assert (loaded.unet.dtype, loaded.vae.dtype, loaded.text_encoder.dtype) == (
        torch.bfloat16, torch.float32, torch.float32)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = diffusers.DiffusionPipeline.from_pretrained(saved, torch_dtype=torch.float16)
    assert half.unet.dtype == torch.float16
    assert any("`torch_dtype` is deprecated" in str(w.message) and "`dtype`" in str(w.message) for w in caught)


def test_scheduler_from_config_keeps_the_checkpoint_schedule(saved):
    checkpoint = diffusers.DDIMScheduler.from_pretrained(saved / "scheduler")  # as a pipeline loads it
    swapped = diffusers.EulerDiscreteScheduler.from_config(checkpoint.config)
    fresh = diffusers.EulerDiscreteScheduler()
    assert torch.allclose(swapped.alphas_cumprod, checkpoint.alphas_cumprod)
    assert not torch.allclose(fresh.alphas_cumprod, checkpoint.alphas_cumprod)  # linear betas 1e-4..0.02
    for s in (swapped, fresh):
        s.set_timesteps(4)
    assert swapped.timesteps.tolist() == [751.0, 501.0, 251.0, 1.0]  # "leading" with steps_offset=1
    assert fresh.timesteps.tolist() == [999.0, 666.0, 333.0, 0.0]  # the class default, "linspace"
    # keys Euler does not take ride along in its config, unused
    assert swapped.config.clip_sample is False
    assert "clip_sample" not in diffusers.EulerDiscreteScheduler.__init__.__code__.co_varnames
    # from a scheduler built in code, the values it left at its defaults are not carried over
    built = diffusers.EulerDiscreteScheduler.from_config(diffusers.DDIMScheduler(**SD15_SCHEDULER).config)
    assert built.config.timestep_spacing == "linspace" and built.config.beta_schedule == "scaled_linear"


def test_from_pipe_shares_the_modules_and_casts_them(saved):
    half = diffusers.DiffusionPipeline.from_pretrained(saved, dtype=torch.float16)
    img2img = diffusers.StableDiffusionImg2ImgPipeline.from_pipe(half)
    assert img2img.unet is half.unet and img2img.vae is half.vae  # no copy
    assert half.unet.dtype == torch.float32  # from_pipe's dtype defaults to float32: the original pipe changed too
    kept = diffusers.DiffusionPipeline.from_pretrained(saved, dtype=torch.float16)
    diffusers.StableDiffusionImg2ImgPipeline.from_pipe(kept, dtype=torch.float16)
    assert kept.unet.dtype == torch.float16


@pytest.mark.parametrize(
    ("name", "call", "encoder_calls", "batches"),
    [
        ("StableDiffusionPipeline", {"guidance_scale": 1.0}, 1, [1, 1, 1]),
        ("StableDiffusionPipeline", {"guidance_scale": 7.5}, 2, [2, 2, 2]),  # the empty negative prompt is encoded
        ("StableDiffusionXLPipeline", {"guidance_scale": 1.0}, 2, [1, 1, 1]),  # two encoders, once each
        ("StableDiffusionXLPipeline", {"guidance_scale": 5.0}, 2, [2, 2, 2]),  # empty negative: zeros, not encoded
        ("StableDiffusionXLPipeline", {"guidance_scale": 5.0, "negative_prompt": "blue car"}, 4, [2, 2, 2]),
        ("FluxPipeline", {"guidance_scale": 3.5, "negative_prompt": "blue car"}, 2, [1, 1, 1]),  # ignored
        ("FluxPipeline", {"true_cfg_scale": 4.0, "negative_prompt": "blue car"}, 4, [1] * 6),
        ("WanPipeline", {"guidance_scale": 1.0}, 1, [1, 1, 1]),
        ("WanPipeline", {"guidance_scale": 5.0}, 2, [1] * 6),  # two passes of batch 1 per step
    ],
)
def test_what_guidance_costs_per_pipeline(name, call, encoder_calls, batches):
    assert tiny.count_work(tiny.BUILD[name](), **call) == (encoder_calls, batches)


def decode_input(pipe, **call) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``vae.decode`` received, and the final latent of the same call (same seed) before decoding."""
    seen = {}
    original = pipe.vae.decode

    def spy(z, *args, **kwargs):
        seen["z"] = z.clone()
        return original(z, *args, **kwargs)

    pipe.vae.decode = spy
    with torch.no_grad():
        pipe(**call, output_type="pt", generator=torch.Generator().manual_seed(0))
        final = pipe(**call, output_type="latent", generator=torch.Generator().manual_seed(0)).images
    pipe.vae.decode = original
    return seen["z"], final


def test_vae_decode_receives_the_unscaled_latent_plus_the_shift():
    torch.manual_seed(0)
    sd = tiny.sd_pipeline(vae=diffusers.AutoencoderKL(
        block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        latent_channels=4, norm_num_groups=4, scaling_factor=0.18215))  # fmt: skip
    z, final = decode_input(sd, prompt="a fox", guidance_scale=1.0, num_inference_steps=2, height=8, width=8)
    assert torch.allclose(z, final / 0.18215, atol=1e-6)  # SD: z / k
    flux = diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=diffusers.AutoencoderKL(
            block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
            latent_channels=4, norm_num_groups=4, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
        transformer=tiny_flux_transformer(guidance_embeds=False),
    )  # fmt: skip
    flux.set_progress_bar_config(disable=True)
    call = dict(prompt_embeds=torch.randn(1, 5, 16), pooled_prompt_embeds=torch.randn(1, 16), num_inference_steps=2,
                height=16, width=16)  # fmt: skip
    z, packed = decode_input(flux, **call)
    final = flux._unpack_latents(packed, 16, 16, flux.vae_scale_factor)  # (B, C, h, w)
    assert torch.allclose(z, final / 0.3611 + 0.1159, atol=1e-6)  # FLUX: z / k + shift
    assert not torch.allclose(z, final / 0.3611, atol=1e-3)


@pytest.mark.parametrize(("ratio", "second"), [(None, 0), (0.875, 4)])
def test_wan_transformer_2_runs_only_with_a_boundary_ratio(ratio, second):
    first = tiny_wan_transformer()
    torch.manual_seed(1)
    other = tiny_wan_transformer()
    pipe = diffusers.WanPipeline(
        tokenizer=None, text_encoder=None, vae=None, transformer=first, transformer_2=other,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), boundary_ratio=ratio,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    seen = []
    for name, module in (("transformer", first), ("transformer_2", other)):
        module.register_forward_pre_hook(
            lambda m, a, k, n=name: seen.append((n, int(k["timestep"][0]))), with_kwargs=True
        )
    emb = torch.randn(1, 8, 16)
    with torch.no_grad():
        pipe(prompt_embeds=emb, negative_prompt_embeds=emb, guidance_scale=1.0, num_inference_steps=6, height=32,
             width=32, num_frames=5, output_type="latent", generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert [n for n, _ in seen].count("transformer_2") == second
    if ratio is not None:  # the low-noise steps, t < boundary_ratio * 1000
        assert all((t < ratio * 1000) == (n == "transformer_2") for n, t in seen)


def test_a_wrong_text_encoder_is_accepted_and_fails_at_the_first_call():
    pipe = tiny.sd_pipeline()
    pipe.text_encoder = tiny_clip(hidden=32)  # the UNet's cross-attention expects width 16
    pipe.register_modules(text_encoder=pipe.text_encoder)  # construction and assignment: no check
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        pipe("a red fox", num_inference_steps=1, height=8, width=8, output_type="latent")


def test_the_loading_path_starter_prints_what_diffusers_did(starter):
    # the session fixture (conftest.py) runs it once, as `python loading_path.py`, and fails on stderr
    out = starter("diffuser/lab-06-diffusers-pipeline-components/loading_path.py")
    assert re.search(r"unet\s+\['diffusers', 'UNet2DConditionModel'\]", out)
    assert re.search(r"unet\s+torch.bfloat16", out) and re.search(r"vae\s+torch.float32", out)
    assert "from_config(config)  scaled_linear  alpha_bar[999]=0.00466 timesteps=[751, 501, 251, 1]" in out
    assert "default-built        linear         alpha_bar[999]=0.00004 timesteps=[999, 666, 333, 0]" in out
    assert "loaded.unet.dtype before: torch.bfloat16, after: torch.float32" in out
    assert "components called, in order: text_encoder -> unet -> vae" in out
    assert "calls per component: {'text_encoder': 2, 'unet': 3, 'vae': 1}" in out
