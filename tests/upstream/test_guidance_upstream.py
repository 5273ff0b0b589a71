"""How diffusers' pipelines compute classifier-free guidance, observed on tiny random pipelines.

``StableDiffusionPipeline`` runs one denoiser call per step on a doubled batch ``[uncond, cond]``;
``WanPipeline`` runs two calls per step, conditional first; both guide only when
``guidance_scale > 1``. Each pipeline's guided prediction is compared with ``cfg_combine`` on the
outputs recorded from its own denoiser. Also asserts the source lines the Lab 04 page cites.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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

from ._tiny import tiny_sd_pipeline  # noqa: E402

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


def diffusers_file(relative: str) -> list[str]:
    root = Path(importlib.util.find_spec("diffusers").origin).parent
    return (root / relative).read_text().splitlines()


SD = "pipelines/stable_diffusion/pipeline_stable_diffusion.py"
WAN = "pipelines/wan/pipeline_wan.py"
# Lines cited (with a link) on the Lab 04 page: (file, line number in diffusers 0.42.1, text the line holds).
CITED = [
    (SD, 764, "return self._guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None"),
    (SD, 1037, "latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents"),
    (SD, 1054, "noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)"),
    (SD, 1055, "noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)"),
    (WAN, 364, "return self._guidance_scale > 1.0"),
    ("pipelines/flux/pipeline_flux.py", 771, "do_true_cfg = true_cfg_scale > 1 and has_neg_prompt"),
    (WAN, 621, "noise_pred = current_model("),
    (WAN, 624, "encoder_hidden_states=prompt_embeds,"),
    (WAN, 629, "if self.do_classifier_free_guidance:"),
    (WAN, 631, "noise_uncond = current_model("),
    (WAN, 634, "encoder_hidden_states=negative_prompt_embeds,"),
    (WAN, 638, "noise_pred = noise_uncond + current_guidance_scale * (noise_pred - noise_uncond)"),
]


@pytest.mark.parametrize(("relative", "line", "text"), CITED, ids=lambda v: str(v))
def test_cited_source_lines(relative, line, text):
    if diffusers.__version__ != "0.42.1":
        pytest.skip(f"line numbers are those of diffusers 0.42.1, not {diffusers.__version__}")
    assert text in diffusers_file(relative)[line - 1]
