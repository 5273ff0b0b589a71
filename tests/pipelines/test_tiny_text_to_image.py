"""The miniature text-to-image pipeline, its DDIM scheduler and component table; Lab 06's starter output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from infralens.diffusion import alphas_cumprod, cfg_combine, ddim_step, latent_shape, make_betas
from infralens.nets import TinyAutoencoderKL, TinyDiT, TinyTextEncoder, tokenize
from infralens.pipelines import (
    COMPONENT_NAMES,
    DIFFUSERS_COMPONENTS,
    ByteTokenizer,
    TinyDDIMScheduler,
    TinyTextToImagePipeline,
    component_table,
    format_component_table,
)

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffuser/lab-06-diffusers-pipeline-components/pipeline_components.py"


@pytest.fixture(scope="module")
def pipe():
    return TinyTextToImagePipeline.from_seed(0)


def _seed(n=0):
    return torch.Generator().manual_seed(n)


# --- the scheduler ---------------------------------------------------------------------------------------------


def test_scheduler_timesteps_and_step_are_the_ddim_formulas():
    scheduler = TinyDDIMScheduler()
    scheduler.set_timesteps(5)
    assert scheduler.timesteps.tolist() == [800, 600, 400, 200, 0]  # "leading": 0, 200, ... reversed
    ab = alphas_cumprod(make_betas("linear"))
    x, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    expected = ddim_step(x, eps, ab[600].item(), ab[400].item(), clip_sample=1.0).prev_sample
    assert torch.equal(scheduler.step(eps, 600, x), expected)
    last = ddim_step(x, eps, ab[0].item(), 1.0, clip_sample=1.0).prev_sample  # alpha_bar_prev = 1 past the end
    assert torch.equal(scheduler.step(eps, torch.tensor(0), x), last)
    no_clip = TinyDDIMScheduler(clip_sample=False)
    no_clip.set_timesteps(5)
    assert torch.equal(no_clip.step(eps, 600, x), ddim_step(x, eps, ab[600].item(), ab[400].item()).prev_sample)
    assert torch.equal(scheduler.scale_model_input(x, 600), x) and scheduler.init_noise_sigma == 1.0


def test_scheduler_errors():
    scheduler = TinyDDIMScheduler()
    with pytest.raises(ValueError) as info:
        scheduler.step(torch.zeros(1), 10, torch.zeros(1))
    assert str(info.value) == "call set_timesteps(num_inference_steps) before step, e.g. scheduler.set_timesteps(50)"
    scheduler.set_timesteps(4)
    with pytest.raises(ValueError) as info:
        scheduler.step(torch.zeros(1), 10, torch.zeros(1))
    assert str(info.value) == "timestep must be one of scheduler.timesteps, e.g. timestep=750; got 10"
    with pytest.raises(ValueError) as info:
        TinyDDIMScheduler(num_train_timesteps=0)
    assert str(info.value) == "num_train_timesteps must be >= 1, e.g. num_train_timesteps=1000; got 0"
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(0)


# --- the pipeline ----------------------------------------------------------------------------------------------


def test_components_and_contracts(pipe):
    assert tuple(pipe.components) == COMPONENT_NAMES
    assert pipe.vae_scale_factor == 2 ** (len(pipe.vae.block_out_channels) - 1) == 8
    assert pipe.text_encoder.dim == pipe.transformer.text_dim
    ids, mask = pipe.tokenizer(["a cat"])
    ref_ids, ref_mask = tokenize(["a cat"], pipe.tokenizer.max_length)
    assert torch.equal(ids, ref_ids) and torch.equal(mask, ref_mask)


def test_scaling_factor_is_measured_on_the_vae():
    vae = TinyAutoencoderKL(latent_channels=4, seed=3)
    g = _seed(3)
    images = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    z = vae.encode(images).sample(g)
    assert TinyTextToImagePipeline.from_seed(3).scaling_factor == pytest.approx(1 / z.std().item())


def test_call_is_the_graph_by_hand(pipe):
    prompts = ["a red fox", "a cat"]
    with torch.no_grad():
        context = pipe.text_encoder(*pipe.tokenizer(prompts))
        scheduler = TinyDDIMScheduler()
        scheduler.set_timesteps(3)
        latents = torch.randn(2, 4, 4, 6, generator=_seed(5))
        for t in scheduler.timesteps:
            latents = scheduler.step(pipe.transformer(latents, t.expand(2), context), t, latents)
        image = (pipe.vae.decode(latents / pipe.scaling_factor) / 2 + 0.5).clamp(0, 1)
    out = pipe(prompts, height=32, width=48, num_inference_steps=3, generator=_seed(5))
    assert out.shape == (2, 3, 32, 48)
    assert torch.allclose(out, image, atol=1e-6)
    final = pipe(prompts, height=32, width=48, num_inference_steps=3, generator=_seed(5), output_type="latent")
    assert torch.allclose(final, latents, atol=1e-6)
    assert final.shape == latent_shape("sd", height=32, width=48, batch=2)


def test_guidance_combines_a_doubled_batch(pipe):
    prompt, negative = ["a red fox"], ["blurry"]
    with torch.no_grad():
        cond = pipe.text_encoder(*pipe.tokenizer(prompt))
        uncond = pipe.text_encoder(*pipe.tokenizer(negative))
        scheduler = TinyDDIMScheduler()
        scheduler.set_timesteps(2)
        latents = torch.randn(1, 4, 4, 4, generator=_seed(2))
        for t in scheduler.timesteps:
            u = pipe.transformer(latents, t.expand(1), uncond)
            c = pipe.transformer(latents, t.expand(1), cond)
            latents = scheduler.step(cfg_combine(u, c, 4.0), t, latents)
    out = pipe(
        prompt,
        height=32,
        width=32,
        num_inference_steps=2,
        guidance_scale=4.0,
        negative_prompt="blurry",
        generator=_seed(2),
        output_type="latent",
    )
    assert torch.allclose(out, latents, atol=1e-5)


def test_component_table_rows(pipe):
    rows = component_table(pipe, ["a red fox"], height=32, width=64, num_inference_steps=3)
    assert [r.name for r in rows] == list(COMPONENT_NAMES)
    by = {r.name: r for r in rows}
    L, D = pipe.tokenizer.max_length, pipe.text_encoder.dim
    z = latent_shape("sd", height=32, width=64)
    assert by["tokenizer"] == by["tokenizer"].__class__("tokenizer", "ByteTokenizer", 0, (), (1, L), 1)
    assert by["text_encoder"].reads == (("input_ids", (1, L)), ("attention_mask", (1, L)))
    assert by["text_encoder"].produces == (1, L, D) and by["text_encoder"].calls == 1
    assert by["transformer"].reads == (("latents", z), ("timesteps", (1,)), ("text", (1, L, D)))
    assert by["transformer"].produces == z and by["transformer"].calls == 3
    assert by["scheduler"].reads == (("model_output", z), ("sample", z)) and by["scheduler"].calls == 3
    assert by["vae"].reads == (("latents", z),) and by["vae"].produces == (1, 3, 32, 64) and by["vae"].calls == 1
    for name in ("text_encoder", "transformer", "vae"):
        assert by[name].parameters == sum(p.numel() for p in getattr(pipe, name).parameters())
    assert by["scheduler"].parameters == 0
    assert pipe._recorder is None  # recording is switched off again
    assert not pipe.transformer._forward_hooks and not pipe.vae.decoder._forward_hooks


def test_component_table_with_guidance_and_latent_output(pipe):
    by = {r.name: r for r in component_table(pipe, ["a", "b"], guidance_scale=3.0, num_inference_steps=2)}
    assert by["text_encoder"].calls == 2 and by["tokenizer"].calls == 2
    assert by["transformer"].reads[0][1][0] == 4 and by["transformer"].calls == 2  # 2B per step
    assert by["scheduler"].produces[0] == 2
    latent_only = {r.name: r for r in component_table(pipe, "a", output_type="latent")}
    assert latent_only["vae"].calls == 0 and latent_only["vae"].produces == ()


def test_format_component_table(pipe):
    text = format_component_table(component_table(pipe, "a red fox"))
    lines = text.splitlines()
    assert lines[0].split() == ["component", "class", "params", "calls", "reads", "produces"]
    assert re.fullmatch(r"tokenizer\s+ByteTokenizer\s+0\s+1\s+prompts\s+\(1,24\)", lines[1])
    n = sum(p.numel() for p in pipe.transformer.parameters())
    assert re.fullmatch(rf"transformer\s+TinyDiT\s+{n:,}\s+4\s+\(1,4,8,8\) \(1,\) \(1,24,48\)\s+\(1,4,8,8\)", lines[3])
    assert max(map(len, lines)) <= 81


def test_diffusers_components_shape():
    assert set(DIFFUSERS_COMPONENTS) == {
        "StableDiffusionPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusion3Pipeline",
        "FluxPipeline",
        "WanPipeline",
    }
    for parts in DIFFUSERS_COMPONENTS.values():
        assert {"vae", "scheduler"} <= set(parts) and ("unet" in parts) != ("transformer" in parts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height": 40}, "height=40 is not a multiple of vae_scale_factor * patch_size = 16; nearest valid: 32 or 48"),
        ({"width": 8}, "width=8 is not a multiple of vae_scale_factor * patch_size = 16; nearest valid: 16"),
        ({"height": 0}, "height must be >= 1, e.g. height=64; got 0"),
        ({"output_type": "pil"}, "output_type must be 'pt' or 'latent', e.g. output_type='pt'; got 'pil'"),
    ],
)
def test_call_errors(pipe, kwargs, message):
    with pytest.raises(ValueError) as info:
        pipe("a cat", **kwargs)
    assert str(info.value) == message


def test_constructor_errors(pipe):
    parts = dict(tokenizer=pipe.tokenizer, scheduler=pipe.scheduler, vae=pipe.vae, transformer=pipe.transformer)
    with pytest.raises(ValueError) as info:
        TinyTextToImagePipeline(text_encoder=TinyTextEncoder(dim=32), scaling_factor=1.0, **parts)
    assert str(info.value) == (
        "text_encoder.dim must equal transformer.text_dim (the width its cross-attention reads): got 32 and 48; "
        "e.g. TinyDiT(text_dim=32)"
    )
    with pytest.raises(ValueError) as info:
        TinyTextToImagePipeline(
            pipe.tokenizer, pipe.text_encoder, pipe.transformer, pipe.scheduler, TinyAutoencoderKL(16), 1.0
        )
    assert str(info.value) == (
        "vae.latent_channels must equal transformer.latent_channels: got 16 and 4; e.g. TinyDiT(latent_channels=16)"
    )
    for bad in (0, -1.0, True, "1"):
        with pytest.raises(ValueError) as info:
            TinyTextToImagePipeline(
                pipe.tokenizer, pipe.text_encoder, TinyDiT(text_dim=48), pipe.scheduler, pipe.vae, bad
            )
        assert str(info.value) == f"scaling_factor must be a number > 0, e.g. scaling_factor=0.18215; got {bad!r}"
    with pytest.raises(ValueError) as info:
        ByteTokenizer(max_length=0)
    assert str(info.value) == "max_length must be >= 1, e.g. max_length=24; got 0"
    with pytest.raises(ValueError) as info:
        component_table("pipe", "a cat")
    assert str(info.value) == (
        "pipe must be a TinyTextToImagePipeline, e.g. TinyTextToImagePipeline.from_seed(0); got str"
    )


def test_starter_trace(starter):
    out = starter(STARTER)
    for name, cls in zip(
        COMPONENT_NAMES,
        ("ByteTokenizer", "TinyTextEncoder", "TinyDiT", "TinyDDIMScheduler", "TinyAutoencoderKL"),
        strict=True,
    ):
        assert re.search(rf"^\s+{name}\s+{cls}$", out, re.M), name
    pipe = TinyTextToImagePipeline.from_seed(0)
    assert f"vae_scale_factor 8, scaling_factor {pipe.scaling_factor:.4f}" in out
    assert "Hand-run graph equals pipe(prompt): True" in out
    lo, hi = re.search(r"image \(1, 3, 64, 64\), values in \[([\d.]+), ([\d.]+)\]", out).groups()
    assert 0 <= float(lo) <= float(hi) <= 1
    plain, guided = out.split("The same pipeline with guidance_scale=5.0")
    te = sum(p.numel() for p in pipe.text_encoder.parameters())
    assert re.search(rf"^text_encoder\s+TinyTextEncoder\s+{te:,}\s+1\s", plain, re.M)
    assert re.search(rf"^text_encoder\s+TinyTextEncoder\s+{te:,}\s+2\s", guided, re.M)
    assert re.search(r"^transformer\s+TinyDiT\s+[\d,]+\s+4\s+\(1,4,8,8\)", plain, re.M)
    assert re.search(r"^transformer\s+TinyDiT\s+[\d,]+\s+4\s+\(2,4,8,8\)", guided, re.M)
    for name, parts in DIFFUSERS_COMPONENTS.items():
        denoisers = r"\s+".join(p for p in parts if p in ("unet", "transformer", "transformer_2"))
        n = sum(p.startswith("text_encoder") for p in parts)
        assert re.search(rf"^\s+{name}\s+{denoisers}\s+text encoders: {n}$", out, re.M), name
    assert re.search(r"WanPipeline\s+transformer transformer_2\s+text encoders: 1", out)
