"""DiffSynth Labs 01, 02 and 04 against DiffSynth-Studio's own ``WanVideoPipeline``, run on a tiny ``WanModel``.

Everything below runs DiffSynth-Studio's code (see ``_wan_pipeline``): ``from_pretrained``
and its ``ModelPool`` load a tiny DiT file whose hash is registered, ``__call__`` runs
the units, the loop and the scheduler, and ``model_fn_wan_video`` runs the DiT. The
diffusers side runs a tiny ``WanPipeline``.

* Lab 01: which dtype each ``from_pretrained`` argument and ``ModelConfig`` field
  gives the weights; a bfloat16 text encoder feeding a float32 DiT; the defaults of
  a bare call (100 DiT calls, tiled decoding, unseeded noise); size rounding; a bad
  dtype string; diffusers' ``model_index.json`` and ``torch_dtype``.
* Lab 02: nothing moves by default; the offload pair does; the two A14B experts are
  told apart by file order only; an unregistered file; a ``state_dict`` handed to
  ``ModelConfig``; ``requires_grad``; diffusers' single-file loader detecting Wan from keys.
* Lab 04: the DiT reads its timestep in the pipeline's dtype, and ``step`` must not be
  handed that copy; the real loop is ``flow_sample``; call counts by ``cfg_scale`` in
  DiffSynth and diffusers; a misspelt template; the expert boundary moves with the shift;
  ``FluxImagePipeline``'s defaults (one call per step, embedded guidance 3.5).
"""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch

from infralens.calculators import cfg_cost
from infralens.diffusion import flow_sample, flow_sigmas
from infralens.pipelines import DIFFSYNTH_WAN_DEFAULTS

from . import _wan_pipeline as wp

pytestmark = pytest.mark.upstream


@pytest.fixture(scope="module")
def dit_file(tmp_path_factory):
    """A tiny WanModel saved in bfloat16, its hash registered for the module's tests."""
    path = wp.save_tiny_dit(tmp_path_factory.mktemp("wan") / "dit.safetensors")
    with wp.registered(path):
        yield path


@pytest.fixture
def no_empty_cache(monkeypatch):
    """``load_models_to_device`` calls ``torch.<device>.empty_cache()``, which ``torch.cpu`` lacks (torch 2.13)."""
    monkeypatch.setattr(torch.cpu, "empty_cache", lambda: None, raising=False)


def weight_dtypes(module) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters()}


def pipe32(dit_file, **standins):
    pipe = wp.from_pretrained(wp.model_config(path=dit_file), torch_dtype=torch.float32)
    return wp.attach_standins(pipe, **standins)


# --- Lab 01: dtypes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_pretrained", "fields", "weights"),
    [
        ({}, {}, torch.bfloat16),  # from_pretrained's default torch_dtype
        ({"torch_dtype": torch.float32}, {}, torch.float32),  # the pipeline dtype is the weights' dtype
        ({}, {"computation_dtype": torch.float16}, torch.float16),  # the per-model override
        ({}, {"onload_dtype": torch.float16}, torch.bfloat16),  # alone, ignored
    ],
)
def test_torch_dtype_is_the_weight_dtype_of_every_model(dit_file, from_pretrained, fields, weights):
    """The file is stored in bfloat16; what the loaded DiT holds depends only on these arguments."""
    pipe = wp.from_pretrained(wp.model_config(path=dit_file, **fields), **from_pretrained)
    assert weight_dtypes(pipe.dit) == {weights}
    assert pipe.vram_management_enabled is False


def test_offload_pair_stores_offload_dtype_and_computes_in_torch_dtype(dit_file, no_empty_cache):
    """``offload_dtype`` and ``offload_device`` together turn VRAM management on: weights move per stage."""
    config = wp.model_config(path=dit_file, offload_dtype=torch.float16, offload_device="cpu")
    pipe = wp.from_pretrained(config, torch_dtype=torch.float32)
    assert pipe.vram_management_enabled is True
    linear = pipe.dit.blocks[0].self_attn.q
    seen = [linear.weight.dtype]
    pipe.load_models_to_device(["dit"])
    seen.append(linear.weight.dtype)
    pipe.load_models_to_device([])
    seen.append(linear.weight.dtype)
    assert seen == [torch.float16, torch.float32, torch.float16]


def test_bf16_text_encoder_into_fp32_dit_raises(dit_file):
    """The prompt unit does not cast the text encoder's output; the DiT's first Linear refuses the mix."""
    pipe = pipe32(dit_file, text_dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="must have the same dtype"):
        wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=1, seed=0)


def test_a_bad_dtype_string_fails_late_as_a_device_error(dit_file):
    config = wp.model_config(path=dit_file, offload_dtype="bf17", offload_device="cpu")  # accepted
    assert config.offload_dtype == "bf17"
    with pytest.raises(RuntimeError, match="Invalid device string: 'bf17'"):
        wp.from_pretrained(config)
    with pytest.raises(TypeError, match="unexpected keyword argument 'pat'"):
        wp.model_config(pat=dit_file)  # a misspelt field is a TypeError: ModelConfig is a dataclass


# --- Lab 01: a bare call ------------------------------------------------------------------------------


def test_a_bare_call_uses_the_defaults_the_page_lists(dit_file):
    """Every argument at its default: the latent the loop sees, the DiT calls, the decoder's tiling, the seed."""
    pipe = pipe32(dit_file)
    rec = wp.Recorder(pipe)
    start = []

    def velocity(**kw):  # the DiT stood in: 1 for the prompt, 0 for the negative prompt, so v = cfg_scale
        rec.calls.append(tuple(kw["latents"].shape))
        start.append(kw["latents"].clone()) if len(start) < 2 else None
        return torch.full_like(kw["latents"], 1.0 if kw["positive"] else 0.0)

    pipe.model_fn = velocity
    latents, _ = wp.call(pipe)  # 100 calls at 480x832x81, each O(1)
    again, _ = wp.call(pipe)
    assert tuple(latents.shape) == (1, 16, 21, 60, 104) == rec.calls[0]
    assert len(rec.calls) == 2 * 100
    assert torch.allclose(pipe.scheduler.sigmas, flow_sigmas("Wan", 50, shift=5.0))  # 50 steps, shift 5
    assert torch.allclose(latents, start[0] - 5.0, atol=1e-4)  # from sigma 1 to 0 along v = 5: cfg_scale 5
    expected = {k: DIFFSYNTH_WAN_DEFAULTS[k] for k in ("tiled", "tile_size", "tile_stride")}
    assert pipe.vae.decoded_with == expected
    h, w, f = (DIFFSYNTH_WAN_DEFAULTS[k] for k in ("height", "width", "num_frames"))
    assert tuple(latents.shape) == (1, 16, 1 + (f - 1) // 4, h // 8, w // 8)
    assert DIFFSYNTH_WAN_DEFAULTS["seed"] is None and not torch.equal(latents, again)  # fresh noise every call


def test_noise_is_drawn_in_float32_on_the_cpu_from_the_seed(dit_file):
    pipe = wp.from_pretrained(wp.model_config(path=dit_file))  # bfloat16 pipeline
    noise = pipe.generate_noise((1, 16, 3, 4, 6), seed=0)
    expected = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator("cpu").manual_seed(0), dtype=torch.float32)
    assert noise.dtype == torch.bfloat16 and torch.equal(noise, expected.to(torch.bfloat16))


def test_sizes_are_rounded_up_with_a_printed_line(dit_file):
    pipe = pipe32(dit_file)
    rec = wp.Recorder(pipe)
    _, printed = wp.call(pipe, height=40, width=50, num_frames=8, num_inference_steps=1, seed=0)
    assert "We round it up to 48." in printed and "We round it up to 64." in printed
    assert "We round it up to 9." in printed
    assert rec.calls[0]["latents"] == (1, 16, 3, 6, 8)


def test_the_hidden_tokenizer_default_needs_a_download(dit_file, tmp_path, monkeypatch):
    """``from_pretrained`` fetches umT5's tokenizer unless ``tokenizer_config=None``; offline it fails, obscurely."""
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "true")
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(tmp_path))
    factory = wp.wan_video().WanVideoPipeline.from_pretrained
    with pytest.raises(TypeError, match="path should be string"):
        wp.quiet(factory, device="cpu", model_configs=[])  # the default tokenizer_config finds no files
    pipe, _ = wp.quiet(factory, device="cpu", model_configs=[], tokenizer_config=None)
    assert pipe.tokenizer is None


# --- Lab 01: diffusers --------------------------------------------------------------------------------


def tiny_diffusers_wan():
    pytest.importorskip("diffusers")
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
            text_dim=32, freq_dim=32, ffn_dim=48, num_layers=1,
        ).eval()  # fmt: skip
        vae = AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).eval()
        pipe = WanPipeline(
            tokenizer=None, text_encoder=None, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            transformer=transformer,
        )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_diffusers_model_index_and_torch_dtype(tmp_path):
    from diffusers import WanPipeline

    tiny_diffusers_wan().save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLWan"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert (tmp_path / "transformer" / "config.json").is_file() and (tmp_path / "vae" / "config.json").is_file()
    assert (tmp_path / "scheduler" / "scheduler_config.json").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = WanPipeline.from_pretrained(tmp_path, tokenizer=None, text_encoder=None, torch_dtype=torch.bfloat16)
        per = WanPipeline.from_pretrained(
            tmp_path, tokenizer=None, text_encoder=None,
            torch_dtype={"transformer": torch.bfloat16, "default": torch.float32},
        )  # fmt: skip
    assert one.transformer.dtype == one.vae.dtype == torch.bfloat16  # one dtype casts the VAE too
    assert (per.transformer.dtype, per.vae.dtype) == (torch.bfloat16, torch.float32)
    # what enable_model_cpu_offload walks, one model at a time
    assert WanPipeline.model_cpu_offload_seq == "text_encoder->transformer->transformer_2->vae"


# --- Lab 01 / 04: guidance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg_scale", "merge", "calls", "batch"),
    [(5.0, False, 8, 1), (1.0, False, 4, 1), (0.5, False, 8, 1), (5.0, True, 4, 2)],
)
def test_diffsynth_guides_whenever_cfg_scale_is_not_1(dit_file, cfg_scale, merge, calls, batch):
    pipe = pipe32(dit_file)
    rec = wp.Recorder(pipe)
    wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=4, cfg_scale=cfg_scale, cfg_merge=merge,
            seed=0)  # fmt: skip
    assert len(rec.calls) == calls and rec.calls[0]["context"][0] == batch
    if cfg_scale < 1:  # the book's cfg_cost counts diffusers' rule (guide only above 1): half of DiffSynth's calls
        assert cfg_cost(steps=4, guidance_scale=cfg_scale).calls == calls // 2


@pytest.mark.parametrize(("guidance_scale", "calls"), [(5.0, 4), (1.0, 2), (0.5, 2)])
def test_diffusers_guides_only_above_1(guidance_scale, calls):
    pipe = tiny_diffusers_wan()
    seen = []
    pipe.transformer.register_forward_hook(lambda m, a, o: seen.append(1))
    emb = torch.randn(1, 512, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe(prompt_embeds=emb, negative_prompt_embeds=emb, height=32, width=32, num_frames=5,
             num_inference_steps=2, guidance_scale=guidance_scale, output_type="latent")  # fmt: skip
    assert len(seen) == calls
    assert cfg_cost(steps=2, guidance_scale=guidance_scale).calls == calls  # the book's calculator: diffusers' rule


# --- Lab 02: residency and which file is which -------------------------------------------------------------


def test_default_load_keeps_every_model_where_it_was_loaded(dit_file):
    pipe = pipe32(dit_file)
    before = {name: (p.data_ptr(), p.dtype, p.device) for name, p in pipe.dit.named_parameters()}
    rec = wp.Recorder(pipe)
    wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=1, seed=0)
    assert rec.loads == [("text_encoder",), ("text_encoder",), pipe.in_iteration_models, ("vae",), ()]
    assert pipe.vram_management_enabled is False
    assert before == {name: (p.data_ptr(), p.dtype, p.device) for name, p in pipe.dit.named_parameters()}


def test_with_offload_the_dit_is_onloaded_only_for_the_loop(dit_file, no_empty_cache):
    config = wp.model_config(path=dit_file, offload_dtype=torch.float16, offload_device="cpu")
    pipe = wp.attach_standins(wp.from_pretrained(config, torch_dtype=torch.float32))
    linear = pipe.dit.blocks[0].self_attn.q
    stages = []
    load = pipe.load_models_to_device
    pipe.load_models_to_device = lambda names: (load(names), stages.append((tuple(names), linear.weight.dtype)))[0]
    wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=1, seed=0)
    assert [dtype for _, dtype in stages] == [torch.float16, torch.float16, torch.float32, torch.float16, torch.float16]
    assert stages[2][0] == pipe.in_iteration_models


def test_model_offload_peak_is_the_largest_model_not_the_sum(dit_file, tmp_path, no_empty_cache):
    """A real tiny umT5 (``WanTextEncoder``) and the DiT, both offloaded: what is onloaded after each stage."""
    from safetensors.torch import save_file

    te_kw = dict(vocab=1100, dim=32, dim_attn=32, dim_ffn=64, num_heads=2, num_layers=1, num_buckets=32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        encoder = wp.module("models.wan_video_text_encoder").WanTextEncoder(**te_kw)
    te_file = str(tmp_path / "umt5.safetensors")
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, te_file)
    te_class = "diffsynth.models.wan_video_text_encoder.WanTextEncoder"
    offload = dict(offload_dtype=torch.float16, offload_device="cpu")
    with wp.registered(te_file, model_name="wan_video_text_encoder", model_class=te_class, extra_kwargs=te_kw):
        pipe = wp.from_pretrained(
            wp.model_config(path=te_file, **offload), wp.model_config(path=dit_file, **offload),
            torch_dtype=torch.float32,
        )  # fmt: skip
    pipe.tokenizer, pipe.vae = wp.Tokenizer(), wp.VAE()
    models = ("text_encoder", "dit")
    full = {n: sum(p.numel() * 4 for p in getattr(pipe, n).parameters()) for n in models}  # float32 bytes

    def onloaded(name):  # computing weights are float32, offloaded ones float16
        return sum(p.numel() * 4 for p in getattr(pipe, name).parameters() if p.dtype == torch.float32)

    stages = []
    load = pipe.load_models_to_device
    pipe.load_models_to_device = lambda names: (load(names), stages.append({n: onloaded(n) for n in models}))[0]
    wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=2, seed=0)
    totals = [sum(stage.values()) for stage in stages]
    assert stages[0] == {"text_encoder": full["text_encoder"], "dit": 0}  # prompt unit
    assert stages[2] == {"text_encoder": 0, "dit": full["dit"]}  # the loop
    assert max(totals) == max(full.values()) < sum(full.values())  # M_model = max, never the sum


def test_loaded_models_are_in_eval_mode_but_still_require_grad(dit_file):
    pipe = wp.from_pretrained(wp.model_config(path=dit_file))
    assert not pipe.dit.training and all(p.requires_grad for p in pipe.dit.parameters())


def test_an_unregistered_file_is_refused_before_anything_is_built(tmp_path):
    path = wp.save_tiny_dit(tmp_path / "two_layers.safetensors", num_layers=2)  # one block more: another hash
    with pytest.raises(ValueError, match="Cannot detect the model type"):
        wp.from_pretrained(wp.model_config(path=path))


def test_a_state_dict_in_model_config_is_loaded_strictly_in_place_of_the_hashed_file(dit_file):
    """The hash is the file's; ``ModelConfig(state_dict=...)`` is loaded instead of it, so its missing keys fail."""
    from safetensors.torch import load_file

    full = load_file(dit_file)
    zeroed = {**full, "head.head.weight": torch.zeros_like(full["head.head.weight"])}
    pipe = wp.from_pretrained(wp.model_config(path=dit_file, state_dict=zeroed), torch_dtype=torch.float32)
    assert not pipe.dit.head.head.weight.any()  # the values are the dict's, not the file's
    partial = {k: v for k, v in full.items() if not k.startswith("head.")}
    with pytest.raises(RuntimeError, match=r"Missing key\(s\)"):
        wp.from_pretrained(wp.model_config(path=dit_file, state_dict=partial))


def test_two_experts_are_told_apart_by_model_config_order_only(tmp_path):
    """Wan 2.2 A14B: both experts have one architecture, so one hash; ``index=2`` takes them in file order."""
    high = wp.save_tiny_dit(tmp_path / "high_noise.safetensors", seed=1)
    low = wp.save_tiny_dit(tmp_path / "low_noise.safetensors", seed=2)
    files = wp.module("core.loader.file")
    assert files.hash_model_file(high) == files.hash_model_file(low)
    with wp.registered(high):
        right = wp.from_pretrained(wp.model_config(path=high), wp.model_config(path=low), torch_dtype=torch.float32)
        swapped = wp.from_pretrained(wp.model_config(path=low), wp.model_config(path=high), torch_dtype=torch.float32)
    assert torch.equal(right.dit.head.head.weight, swapped.dit2.head.head.weight)
    assert not torch.equal(right.dit.head.head.weight, swapped.dit.head.head.weight)
    wp.attach_standins(swapped)
    rec = wp.Recorder(swapped)
    wp.call(swapped, height=32, width=48, num_frames=5, num_inference_steps=10, cfg_scale=1.0, seed=0)
    first = [c["dit"] is swapped.dit for c in rec.calls]
    assert first[0] and not first[-1]  # the low-noise file now denoises from pure noise, without a message


def test_wan21_14b_components_weigh_what_the_book_counts():
    """DiffSynth's own Wan 2.1 14B classes, built on the meta device, against ``wan21_t2v_components()``."""
    from infralens.memory import wan21_t2v_components

    entry = next(e for e in wp.module("models.model_loader").MODEL_CONFIGS
                 if e["model_hash"] == "aafcfd9672c3a2456dc46e1cb6e52c70")  # Wan2.1-T2V-14B  # fmt: skip
    with torch.device("meta"):
        built = {
            "text_encoder": wp.module("models.wan_video_text_encoder").WanTextEncoder(),
            "dit": wp.module("models.wan_video_dit").WanModel(**entry["extra_kwargs"]),
            "vae": wp.module("models.wan_video_vae").WanVideoVAE(),
        }
    theirs = {name: 2 * sum(p.numel() for p in m.parameters()) for name, m in built.items()}  # bfloat16
    assert theirs == {c.name: c.total_bytes for c in wan21_t2v_components()}


def test_diffusers_single_file_loader_detects_wan_from_keys():
    pytest.importorskip("diffusers")
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    configs = wp.module("models.model_loader").MODEL_CONFIGS
    for model_hash, expected in (
        ("9269f8db9040a9d860eaca435be61814", "wan-t2v-1.3B"),
        ("aafcfd9672c3a2456dc46e1cb6e52c70", "wan-t2v-14B"),
    ):
        entry = next(e for e in configs if e["model_hash"] == model_hash)
        with torch.device("meta"):
            state = wp.module("models.wan_video_dit").WanModel(**entry["extra_kwargs"]).state_dict()
        assert infer_diffusers_model_type(state) == expected


# --- Lab 04: the loop ---------------------------------------------------------------------------------------


def test_the_dit_reads_its_timestep_in_the_pipeline_dtype(dit_file):
    pipe = wp.attach_standins(wp.from_pretrained(wp.model_config(path=dit_file)))  # bfloat16 by default
    rec = wp.Recorder(pipe)
    wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=50, cfg_scale=1.0, seed=0)
    scheduler = pipe.scheduler.timesteps  # float32, what step() is handed back
    seen = torch.cat([c["timestep"] for c in rec.calls])
    assert scheduler.dtype == torch.float32 and seen.dtype == torch.bfloat16
    assert round(scheduler[1].item(), 2) == 995.93 and seen[1].item() == 996.0
    assert (seen.float() - scheduler).abs().max() > 1.0  # bfloat16's spacing is 4 between 512 and 1024


@pytest.mark.parametrize(("steps", "shift", "w"), [(6, 5.0, 4.0), (4, 5.0, 1.0), (7, 3.0, 3.0)])
def test_the_real_loop_is_flow_sample(dit_file, steps, shift, w):
    """A float32 run of ``__call__`` ends where ``flow_sample`` on the same DiT, noise and prompts ends."""
    pipe = pipe32(dit_file)
    rec = wp.Recorder(pipe)
    latents, _ = wp.call(
        pipe, negative_prompt="blurry", height=32, width=48, num_frames=5, num_inference_steps=steps,
        sigma_shift=shift, cfg_scale=w, seed=3,
    )  # fmt: skip
    assert len(rec.calls) == steps * (1 if w == 1 else 2)
    posi = rec.calls[0]["context_tensor"]
    nega = rec.calls[1]["context_tensor"] if w != 1 else None
    noise = torch.randn(1, 16, 2, 4, 6, generator=torch.Generator("cpu").manual_seed(3))
    model_fn = wp.wan_video().model_fn_wan_video

    def dit(x, t, text):
        with torch.no_grad():
            return model_fn(dit=pipe.dit, latents=x, timestep=t, context=text)

    ours = flow_sample(dit, noise, flow_sigmas("Wan", steps, shift=shift), posi, negative_text=nega, guidance_scale=w)
    assert torch.allclose(latents, ours, atol=1e-5)


def test_the_real_loop_lands_on_a_point_mass(dit_file):
    """Whatever the schedule, Euler steps along the exact velocity (x - m) / sigma end on m."""
    from infralens.nets import GaussianVelocity

    pipe = pipe32(dit_file)
    point = GaussianVelocity(mean=-0.25, std=0.0)
    pipe.model_fn = lambda **kw: point(kw["latents"], kw["timestep"].expand(kw["latents"].shape[0]))
    latents, _ = wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=6, cfg_scale=1.0, seed=1)
    assert torch.allclose(latents, torch.full_like(latents, -0.25), atol=1e-5)


def test_a_misspelt_template_silently_gives_flux_sigmas():
    FlowMatchScheduler = wp.module("diffusion.flow_match").FlowMatchScheduler
    wrong, flux, wan = FlowMatchScheduler("wan"), FlowMatchScheduler("FLUX.1"), FlowMatchScheduler("Wan")
    for s in (wrong, flux, wan):
        s.set_timesteps(10)
    assert torch.equal(wrong.sigmas, flux.sigmas) and not torch.allclose(wrong.sigmas, wan.sigmas)
    assert torch.allclose(wan.sigmas, flow_sigmas("Wan", 10)) and torch.allclose(flux.sigmas, flow_sigmas("FLUX.1", 10))
    wrong.set_timesteps(10, shift=5.0)  # the pipeline's sigma_shift: FLUX.1 ends near 0, Wan at 0.3571
    assert round(wrong.sigmas[-1].item(), 4) == 0.0148
    assert torch.allclose(wrong.sigmas, flow_sigmas("FLUX.1", 10, shift=5.0))


@pytest.mark.parametrize(("steps", "wrong_steps"), [(50, 0), (100, 11), (200, 63)])
def test_step_handed_the_bfloat16_timestep_picks_a_neighbouring_step(steps, wrong_steps):
    """``step`` finds its index by the nearest timestep: the DiT's bfloat16 copy hits a neighbour once steps crowd."""
    scheduler = wp.module("diffusion.flow_match").FlowMatchScheduler("Wan")
    scheduler.set_timesteps(steps, shift=5.0)
    v, x = torch.ones(1), torch.zeros(1)  # step returns sigma_next - sigma, which names the step it took
    wrong = [
        i
        for i, t in enumerate(scheduler.timesteps)
        if not torch.equal(scheduler.step(v, t, x), scheduler.step(v, t.to(torch.bfloat16), x))
    ]
    assert len(wrong) == wrong_steps


def test_the_template_default_is_100_steps_the_pipeline_default_50(dit_file):
    FlowMatchScheduler = wp.module("diffusion.flow_match").FlowMatchScheduler
    template = FlowMatchScheduler("Wan")
    template.set_timesteps()
    assert len(template.sigmas) == 100
    pipe = pipe32(dit_file)
    pipe.model_fn = lambda **kw: torch.zeros_like(kw["latents"])
    wp.call(pipe, height=32, width=48, num_frames=5, cfg_scale=1.0)
    assert len(pipe.scheduler.sigmas) == DIFFSYNTH_WAN_DEFAULTS["num_inference_steps"] == 50


@pytest.mark.parametrize(("shift", "first_expert_steps"), [(3.0, 15), (5.0, 21), (8.0, 27)])
def test_the_shift_moves_the_expert_boundary(tmp_path, shift, first_expert_steps):
    """With two DiTs, ``__call__`` switches once the timestep drops below 875: the shift decides when."""
    high = wp.save_tiny_dit(tmp_path / "high.safetensors", seed=1)
    low = wp.save_tiny_dit(tmp_path / "low.safetensors", seed=2)
    with wp.registered(high):
        pipe = wp.from_pretrained(wp.model_config(path=high), wp.model_config(path=low), torch_dtype=torch.float32)
    wp.attach_standins(pipe)
    rec = wp.Recorder(pipe)
    pipe.model_fn = lambda **kw: (rec.calls.append(kw["dit"]), torch.zeros_like(kw["latents"]))[1]
    wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=50, sigma_shift=shift, cfg_scale=1.0)
    assert sum(dit is pipe.dit for dit in rec.calls) == first_expert_steps
    # the scheduler's float32 timesteps decide: at shift 3, sigma_15 = 2.1 / 2.4 = 0.875 exactly in real
    # numbers, and float32 puts timestep 15 just below 875, so the second expert takes it
    assert int((pipe.scheduler.timesteps >= 875).sum()) == first_expert_steps


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record):
        self.seen.append(record.getMessage())


def test_diffusers_wan_pipeline_rounds_frames_and_refuses_heights():
    pipe = tiny_diffusers_wan()
    emb = torch.randn(1, 512, 32)
    messages = _Messages()
    logger = logging.getLogger("diffusers.pipelines.wan.pipeline_wan")  # diffusers' loggers do not propagate
    logger.addHandler(messages)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for frames in (80, 82):  # both become 81, with a logged warning
                messages.seen.clear()
                out = pipe(prompt_embeds=emb, height=32, width=32, num_frames=frames, num_inference_steps=1,
                           guidance_scale=1.0, output_type="latent").frames  # fmt: skip
                assert out.shape[2] == 1 + (81 - 1) // 4
                assert any("Rounding to the nearest number" in m for m in messages.seen)
            with pytest.raises(ValueError, match="divisible by 16"):
                pipe(prompt_embeds=emb, height=40, width=32, num_frames=5, num_inference_steps=1,
                     guidance_scale=1.0, output_type="latent")  # fmt: skip
    finally:
        logger.removeHandler(messages)


def test_flux_image_defaults_one_call_per_step_with_embedded_guidance_3_5():
    """``FluxImagePipeline.__call__`` at its defaults: 30 steps of FLUX.1's template, one call each, guidance 3.5.

    The pipeline's own loop, scheduler and units for size, noise and guidance run; the
    prompt encoders, the DiT (``model_fn``) and the decoder are stood in.
    """
    fi = wp.flux_image()
    pipe = fi.FluxImagePipeline(device="cpu", torch_dtype=torch.float32)
    pipe.units = [
        fi.FluxImageUnit_ShapeChecker(),
        fi.FluxImageUnit_NoiseInitializer(),
        fi.FluxImageUnit_InputImageEmbedder(),
        fi.FluxImageUnit_EmbeddedGuidanceEmbedder(),
    ]
    guidance = []

    def model_fn(**kw):  # the DiT stood in: records the guidance input it is given
        guidance.append(kw["guidance"].tolist())
        return torch.zeros_like(kw["latents"])

    pipe.model_fn = model_fn
    pipe.vae_decoder = lambda latents, **kw: torch.zeros(1, 3, 8 * latents.shape[2], 8 * latents.shape[3])
    pipe(prompt="a", height=32, width=32, seed=0, progress_bar_cmd=lambda steps: steps)
    assert torch.allclose(pipe.scheduler.sigmas, flow_sigmas("FLUX.1", 30))  # FLUX.1's own shift, 3
    assert guidance == [[3.5]] * 30  # cfg_scale 1.0: one call per step, the guidance an input of the DiT
    guidance.clear()
    pipe(prompt="a", height=32, width=32, seed=0, num_inference_steps=4, cfg_scale=2.0, progress_bar_cmd=lambda s: s)
    assert len(guidance) == 8  # a real cfg_scale doubles the calls, as in the Wan pipeline
