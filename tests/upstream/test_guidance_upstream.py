"""How diffusers' pipelines compute classifier-free guidance, observed on tiny random pipelines.

``StableDiffusionPipeline`` runs one denoiser call per step on a doubled batch ``[uncond, cond]``;
``WanPipeline`` runs two calls per step, conditional first; both guide only when
``guidance_scale > 1``. Each pipeline's guided prediction is compared with ``cfg_combine`` on the
outputs recorded from its own denoiser. Then the traps around it: at ``guidance_scale=1`` the negative
prompt is dropped; SDXL's default unconditional branch is zeros; FLUX.1-dev's ``guidance_scale`` is an
embedding (a second call needs ``true_cfg_scale > 1``) and its transformer receives sigma, not 1000 sigma;
the paper's guidance weight is diffusers' minus one. The page's source links are checked by
``test_citations.py``.
"""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers import (  # noqa: E402
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanPipeline,
    WanTransformer3DModel,
)

from infralens.diffusion import cfg_combine  # noqa: E402

from ._tiny import tiny_flux_pipeline, tiny_sd_pipeline, tiny_sd_unet  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

STEPS = 3


def record(pipe, denoiser):
    """Record every denoiser call (batch, text embeddings, output) and every prediction given to scheduler.step."""
    calls, stepped = [], []

    def hook(module, args, kwargs, out):
        x = kwargs.get("hidden_states", kwargs.get("sample", args[0] if args else None))
        text = kwargs["encoder_hidden_states"]
        calls.append((x.shape[0], text.detach().clone(), out[0].detach().clone()))

    denoiser.register_forward_hook(hook, with_kwargs=True)
    original = pipe.scheduler.step

    def step(model_output, *args, **kwargs):
        stepped.append(model_output.detach().clone())
        return original(model_output, *args, **kwargs)

    pipe.scheduler.step = step
    return calls, stepped


def tiny_wan():
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    ).eval()
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()
    pipe = WanPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("scale", [7.5, 1.0])
def test_stable_diffusion_batch_doubles(scale):
    pipe = tiny_sd_pipeline()
    calls, stepped = record(pipe, pipe.unet)
    cond, uncond = torch.randn(1, 5, 12), torch.randn(1, 5, 12)
    pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        guidance_scale=scale,
        num_inference_steps=STEPS,
        height=16,
        width=16,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    assert len(calls) == len(stepped) == STEPS  # one call per step, either way
    for (batch, text, out), guided in zip(calls, stepped, strict=True):
        if scale > 1:
            assert batch == 2 and torch.equal(text, torch.cat([uncond, cond]))  # [uncond, cond]
            u, c = out.chunk(2)
            assert torch.allclose(cfg_combine(u, c, scale), guided, atol=1e-6)
        else:  # no guidance: no doubled batch, no negative prompt
            assert batch == 1 and torch.equal(text, cond) and torch.equal(out, guided)


@pytest.mark.parametrize("scale", [5.0, 1.0])
def test_wan_runs_two_passes(scale):
    pipe = tiny_wan()
    calls, stepped = record(pipe, pipe.transformer)
    cond, uncond = torch.randn(1, 6, 32), torch.randn(1, 6, 32)
    pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        guidance_scale=scale,
        num_inference_steps=STEPS,
        height=16,
        width=16,
        num_frames=5,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    assert len(stepped) == STEPS
    assert all(batch == 1 for batch, _, _ in calls)  # never a doubled batch
    if scale > 1:
        assert len(calls) == 2 * STEPS  # two passes per step: the prompt first, then the negative prompt
        for i, guided in enumerate(stepped):
            (_, t_c, c), (_, t_u, u) = calls[2 * i], calls[2 * i + 1]
            assert torch.equal(t_c, cond) and torch.equal(t_u, uncond)
            assert torch.allclose(cfg_combine(u, c, scale), guided, atol=1e-6)
    else:
        assert len(calls) == STEPS and all(torch.equal(t, cond) for _, t, _ in calls)


def test_scale_one_drops_the_negative_prompt():
    """At guidance_scale=1 StableDiffusionPipeline runs the prompt alone: two different negative prompts give
    bit-identical latents."""
    pipe = tiny_sd_pipeline()
    batches = []
    pipe.unet.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
    cond = torch.randn(1, 5, 12)
    outs = [
        pipe(
            prompt_embeds=cond,
            negative_prompt_embeds=torch.randn(1, 5, 12),
            guidance_scale=1.0,
            num_inference_steps=STEPS,
            height=16,
            width=16,
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
        ).images
        for _ in range(2)
    ]
    assert batches == [1] * (2 * STEPS) and torch.equal(outs[0], outs[1])


def test_sdxl_default_unconditional_branch_is_zeros():
    """StableDiffusionXLPipeline (force_zeros_for_empty_prompt=True) guides against zero embeddings, not against
    the encoding of the empty prompt, when no negative prompt is given."""
    sd = tiny_sd_pipeline()
    xl = diffusers.StableDiffusionXLPipeline(
        vae=sd.vae,
        text_encoder=None,
        text_encoder_2=None,
        tokenizer=None,
        tokenizer_2=None,
        unet=tiny_sd_unet(),
        scheduler=diffusers.EulerDiscreteScheduler(),
    )
    assert xl.config.force_zeros_for_empty_prompt is True
    _, negative, _, negative_pooled = xl.encode_prompt(
        prompt=None,
        prompt_embeds=torch.randn(1, 5, 12),
        pooled_prompt_embeds=torch.randn(1, 8),
        do_classifier_free_guidance=True,
        device=torch.device("cpu"),
    )
    assert negative.shape == (1, 5, 12) and not negative.any() and not negative_pooled.any()


def flux_call_timesteps(pipe, true_cfg_scale):
    seen = []
    handle = pipe.transformer.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(float(kwargs["timestep"][0])), with_kwargs=True
    )
    g = torch.Generator().manual_seed(0)
    pipe(
        prompt_embeds=torch.randn(1, 6, 32, generator=g),
        pooled_prompt_embeds=torch.randn(1, 32, generator=g),
        negative_prompt_embeds=torch.randn(1, 6, 32, generator=g),
        negative_pooled_prompt_embeds=torch.randn(1, 32, generator=g),
        true_cfg_scale=true_cfg_scale,
        guidance_scale=3.5,
        height=16,
        width=16,
        num_inference_steps=STEPS,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    handle.remove()
    return seen


def test_flux_guidance_is_an_embedding_and_true_cfg_doubles_the_calls():
    """FLUX.1-dev layout (guidance_embeds=True): guidance_scale=3.5 with a negative prompt makes one transformer
    call per step; true_cfg_scale=4 makes two. The transformer receives timestep / 1000, i.e. sigma."""
    pipe = tiny_flux_pipeline()
    once = flux_call_timesteps(pipe, 1.0)
    assert len(once) == STEPS
    assert len(flux_call_timesteps(pipe, 4.0)) == 2 * STEPS
    sigmas = pipe.scheduler.sigmas[:STEPS].tolist()
    assert once[0] == 1.0 and all(0 < t <= 1 for t in once)
    assert [round(t, 4) for t in once] == [round(s, 4) for s in sigmas]


def test_flux_transformer_multiplies_the_timestep_back():
    """A custom loop passing scheduler.timesteps (1000 sigma) straight to FluxTransformer2DModel feeds it
    timestep 1000 times too large: its output changes."""
    transformer = tiny_flux_pipeline().transformer
    kwargs = dict(
        hidden_states=torch.randn(1, 4, 16),
        encoder_hidden_states=torch.randn(1, 6, 32),
        pooled_projections=torch.randn(1, 32),
        guidance=torch.tensor([3.5]),
        txt_ids=torch.zeros(6, 3),
        img_ids=torch.zeros(4, 3),
        return_dict=False,
    )
    with torch.no_grad():
        right = transformer(timestep=torch.tensor([0.5]), **kwargs)[0]
        wrong = transformer(timestep=torch.tensor([500.0]), **kwargs)[0]
    assert (right - wrong).abs().max() > 0.01


def test_the_papers_weight_is_diffusers_weight_minus_one():
    """diffusers' ClassifierFreeGuidance guider: the default is cfg_combine(u, c, w); Ho & Salimans' formulation
    (use_original_formulation=True), c + w (c - u), is cfg_combine(u, c, w + 1)."""
    from diffusers.guiders import ClassifierFreeGuidance

    g = torch.Generator().manual_seed(0)
    c, u = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    w = 7.5
    default = ClassifierFreeGuidance(guidance_scale=w).forward(c, u).pred
    original = ClassifierFreeGuidance(guidance_scale=w, use_original_formulation=True).forward(c, u).pred
    assert torch.allclose(default, cfg_combine(u, c, w), atol=1e-5)
    assert torch.allclose(original, cfg_combine(u, c, w + 1), atol=1e-5)
    assert not torch.allclose(original, cfg_combine(u, c, w), atol=1e-3)


def test_sd_skips_cfg_for_a_unet_with_a_guidance_embedding():
    """A UNet built with ``time_cond_proj_dim`` (guidance-distilled, e.g. LCM) takes w as an embedding:
    StableDiffusionPipeline then makes one call on batch 1 per step even at guidance_scale=7.5."""
    pipe = tiny_sd_pipeline()
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel.from_config(pipe.unet.config, time_cond_proj_dim=8).eval()
    pipe = diffusers.StableDiffusionPipeline(**{**pipe.components, "unet": unet}, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    calls, _ = record(pipe, pipe.unet)
    pipe(
        prompt_embeds=torch.randn(1, 5, 12),
        negative_prompt_embeds=torch.randn(1, 5, 12),
        guidance_scale=7.5,
        num_inference_steps=STEPS,
        height=16,
        width=16,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    assert not pipe.do_classifier_free_guidance
    assert [batch for batch, _, _ in calls] == [1] * STEPS
