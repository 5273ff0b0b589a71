"""Cross-check one reverse step against diffusers' ``DDPMScheduler.step`` and ``DDIMScheduler.step``.

Random tensors, default configs apart from the setting under test, the same noise on both sides
(diffusers draws it with ``torch.randn`` from the generator it is given, so the same seed gives the
same ``z``). Then what a pipeline does to the scheduler it is given, how a scheduler swap keeps or loses
the model's ``prediction_type``, when DDIM with eta = 1 is DDPM, and what an epsilon model does at zero
terminal SNR. The page's source links are checked by ``test_citations.py``.
"""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler  # noqa: E402

from infralens.diffusion import PREDICTION_TYPES, ddim_step, ddpm_step  # noqa: E402

from ._tiny import tiny_sd_pipeline  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

SHAPE = (2, 4, 8, 8)


def tensors(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


def close(ours, theirs):
    # diffusers forms its coefficients in float32 tensors, we in float64: float32 rounding apart
    scale = 1 + theirs.abs().max()
    assert (ours - theirs).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_ddpm_step_over_a_50_step_schedule(prediction_type, clip):
    sched = DDPMScheduler(prediction_type=prediction_type, clip_sample=clip)
    sched.set_timesteps(50)
    x, model_output = tensors(0)
    for i, t in enumerate(sched.timesteps.tolist()):
        prev_t = int(sched.previous_timestep(t))
        ab = sched.alphas_cumprod[t]
        ab_prev = sched.alphas_cumprod[prev_t] if prev_t >= 0 else 1.0
        theirs = sched.step(model_output, t, x, generator=torch.Generator().manual_seed(i))
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(i))
        ours = ddpm_step(
            x, model_output, ab, ab_prev, prediction_type=prediction_type, noise=z, clip_sample=1.0 if clip else None
        )
        close(ours.pred_original_sample, theirs.pred_original_sample)
        close(ours.prev_sample, theirs.prev_sample)


def float64_copy(sched):
    """The same scheduler computing in float64: an independent reference for both implementations."""
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.one = torch.tensor(1.0, dtype=torch.float64)
    return sched


def test_ddpm_step_over_the_full_1000_step_chain():
    """Without set_timesteps the previous timestep is t - 1, and t = 0 adds no noise.

    Near t = 0 the one-step beta is 1 - alpha_bar_t / alpha_bar_prev, a difference of two numbers close
    to 1: diffusers forms it (and 1 - alpha_bar_t) in float32 and loses digits there, we in float64.
    Both are compared with diffusers' own step run in float64.
    """
    sched, ref = DDPMScheduler(clip_sample=False), float64_copy(DDPMScheduler(clip_sample=False))
    x, model_output = tensors(1)
    for t in (999, 500, 10, 1, 0):
        ab = sched.alphas_cumprod[t]
        ab_prev = sched.alphas_cumprod[t - 1] if t > 0 else 1.0
        # diffusers draws its noise in the dtype of the model output: the same seed, drawn in float64
        exact = ref.step(model_output.double(), t, x.double(), generator=torch.Generator().manual_seed(t))
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        ours = ddpm_step(x, model_output, ab, ab_prev, noise=z.float()).prev_sample
        assert (ours.double() - exact.prev_sample).abs().max() <= 2e-6 * (1 + exact.prev_sample.abs().max())
    # diffusers in float32 at t = 1 against ours in float64 (itself checked against diffusers in float64 above):
    # off by more than 1e-5 of the latent, while ours in float32 stays within 1e-6
    z32 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    theirs1 = sched.step(model_output, 1, x, generator=torch.Generator().manual_seed(1)).prev_sample
    ours1 = ddpm_step(x, model_output, sched.alphas_cumprod[1], sched.alphas_cumprod[0], noise=z32).prev_sample
    ab1, ab0 = ref.alphas_cumprod[1], ref.alphas_cumprod[0]
    ref1 = ddpm_step(x.double(), model_output.double(), ab1, ab0, noise=z32.double()).prev_sample
    assert (ours1.double() - ref1).abs().max() < 1e-6 < 1e-5 < (theirs1.double() - ref1).abs().max() < 1e-3
    assert torch.equal(
        sched.step(model_output, 0, x, generator=torch.Generator().manual_seed(0)).prev_sample,
        sched.step(model_output, 0, x, generator=torch.Generator().manual_seed(1)).prev_sample,
    )  # the last step is deterministic: our ddpm_step(..., alpha_bar_prev=1.0) needs no noise either


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_ddim_step_over_a_50_step_schedule(prediction_type, clip, eta):
    sched = DDIMScheduler(prediction_type=prediction_type, clip_sample=clip)
    sched.set_timesteps(50)
    x, model_output = tensors(2)
    for i, t in enumerate(sched.timesteps.tolist()):
        prev_t = t - 1000 // 50  # DDIMScheduler.step's rule, whatever the spacing
        ab = sched.alphas_cumprod[t]
        ab_prev = sched.alphas_cumprod[prev_t] if prev_t >= 0 else sched.final_alpha_cumprod
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(i))
        theirs = sched.step(model_output, t, x, eta=eta, variance_noise=z if eta > 0 else None)
        ours = ddim_step(
            x,
            model_output,
            ab,
            ab_prev,
            prediction_type=prediction_type,
            eta=eta,
            noise=z,
            clip_sample=1.0 if clip else None,
        )
        close(ours.pred_original_sample, theirs.pred_original_sample)
        close(ours.prev_sample, theirs.prev_sample)


def test_defaults_the_page_states():
    for cls in (DDPMScheduler, DDIMScheduler):
        config = cls().config
        assert config.prediction_type == "epsilon"
        assert config.clip_sample is True and config.clip_sample_range == 1.0
        assert config.timestep_spacing == "leading" and config.steps_offset == 0
    assert DDPMScheduler().config.variance_type == "fixed_small"
    ddim = DDIMScheduler()
    assert ddim.config.set_alpha_to_one is True and ddim.final_alpha_cumprod.item() == 1.0
    ddim = DDIMScheduler(set_alpha_to_one=False)  # then the last step goes to alpha_bar_0, not 1
    assert ddim.final_alpha_cumprod.item() == ddim.alphas_cumprod[0].item() < 1.0


def run_recording_x0(pipe, steps=5):
    """Run the tiny SD pipeline with CFG; return the final latents and max |x0_hat| seen at each step."""
    seen, original = [], pipe.scheduler.step

    def step(model_output, t, sample, **kwargs):
        kwargs["return_dict"] = True
        out = original(model_output, t, sample, **kwargs)
        seen.append(out.pred_original_sample.abs().max().item())
        return (out.prev_sample,)

    pipe.scheduler.step = step
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(1, 5, 12, generator=g), torch.randn(1, 5, 12, generator=g)
    latents = pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        guidance_scale=5.0,
        num_inference_steps=steps,
        height=16,
        width=16,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    ).images
    return latents, seen


def test_the_pipeline_constructor_rewrites_the_scheduler_and_a_later_assignment_does_not():
    """StableDiffusionPipeline(scheduler=DDIMScheduler()) stores clip_sample=False and steps_offset=1 (50 steps
    start at 981); ``pipe.scheduler = DDIMScheduler()`` afterwards keeps the class defaults and clamps x0_hat
    to [-1, 1] at every step, which changes the result by about the latent's own size."""
    pipe = tiny_sd_pipeline()  # built with scheduler=DDIMScheduler()
    config = pipe.scheduler.config
    assert config.clip_sample is False and config.steps_offset == 1
    pipe.scheduler.set_timesteps(50)
    assert pipe.scheduler.timesteps[0].item() == 981

    unclipped, seen_unclipped = run_recording_x0(pipe)
    pipe = tiny_sd_pipeline()
    pipe.scheduler = DDIMScheduler()  # assigned: not rewritten
    assert pipe.scheduler.config.clip_sample is True and pipe.scheduler.config.steps_offset == 0
    clipped, seen_clipped = run_recording_x0(pipe)
    assert seen_clipped == [1.0] * 5 and min(seen_unclipped) > 10
    rms = (clipped - unclipped).pow(2).mean().sqrt()
    assert rms > 0.5 * unclipped.pow(2).mean().sqrt()


def test_a_new_scheduler_instance_drops_the_prediction_type_and_from_config_keeps_it():
    """Swapping samplers: ``EulerDiscreteScheduler()`` is epsilon whatever the model; ``from_config`` keeps v."""
    v_config = DDIMScheduler(prediction_type="v_prediction", clip_sample=False).config
    assert EulerDiscreteScheduler().config.prediction_type == "epsilon"
    assert EulerDiscreteScheduler.from_config(v_config).config.prediction_type == "v_prediction"


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_with_eta_one_is_the_ddpm_step_only_without_clipping(clip):
    """Same output, same noise: DDIM(eta=1) equals DDPM with clip_sample=False, and not with the default True
    (DDPM builds its mean from the clipped x0_hat, DDIM re-noises with the eps of the unclipped output)."""
    ddpm, ddim = DDPMScheduler(clip_sample=clip), DDIMScheduler(clip_sample=clip, set_alpha_to_one=True)
    ddpm.set_timesteps(50)
    ddim.set_timesteps(50)
    x, model_output = tensors(3)
    worst = 0.0
    for i, t in enumerate(ddim.timesteps.tolist()[:-1]):
        z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(i))
        a = ddpm.step(model_output, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
        b = ddim.step(model_output, t, x, eta=1.0, variance_noise=z).prev_sample
        worst = max(worst, (a - b).abs().max().item())
    if clip:
        assert worst > 1.0
    else:
        assert worst < 1e-4


def test_zero_terminal_snr_breaks_an_epsilon_ddim_step_and_not_a_v_step():
    """Zero terminal SNR with trailing spacing: the first step (t = 999, alpha_bar = 0) of an epsilon model
    gives non-finite x0_hat and latents; a v-prediction model steps finitely."""
    kwargs = dict(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
    )
    x, model_output = tensors(4)
    finite = {}
    for prediction_type in ("epsilon", "v_prediction"):
        sched = DDIMScheduler(prediction_type=prediction_type, **kwargs)
        sched.set_timesteps(30)
        assert sched.timesteps[0].item() == 999 and sched.alphas_cumprod[999].item() == 0.0
        out = sched.step(model_output, 999, x)
        finite[prediction_type] = bool(torch.isfinite(out.prev_sample).all())
    assert finite == {"epsilon": False, "v_prediction": True}
