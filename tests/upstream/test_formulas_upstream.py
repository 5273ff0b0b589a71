"""Cross-check the formulas of ``infralens.diffusion`` against diffusers' schedulers.

Random tensors, default configs, no downloads (``tox -e upstream``). Where the book
deliberately differs from diffusers (float32 coefficients for low-precision
latents), the test asserts the difference instead of hiding it.
"""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers import (  # noqa: E402
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
)

from infralens.diffusion import (  # noqa: E402
    SCHEDULES,
    add_noise,
    alphas_cumprod,
    cfg_combine,
    flow_euler_step,
    flow_interpolate,
    make_betas,
    predict_x0_from_eps,
    rescale_zero_terminal_snr,
    shift_sigmas,
    snr,
    v_target,
)

from ._tiny import tiny_sd_pipeline  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


SETTINGS = [
    ("linear", 1e-4, 0.02),
    ("scaled_linear", 0.00085, 0.012),
    ("squaredcos_cap_v2", 1e-4, 0.02),
]


@pytest.mark.parametrize(("schedule", "start", "end"), SETTINGS)
def test_betas_and_alphas_cumprod(schedule, start, end):
    ref = DDPMScheduler(beta_schedule=schedule, beta_start=start, beta_end=end)
    ours = make_betas(schedule, beta_start=start, beta_end=end)
    assert torch.allclose(ours, ref.betas, rtol=1e-5, atol=1e-9)
    # diffusers multiplies in float32; ours in float64 then rounds: equal to float32 precision
    assert torch.allclose(alphas_cumprod(ours), ref.alphas_cumprod, rtol=1e-4, atol=1e-7)


def test_all_diffusers_schedule_names_we_claim_exist():
    for schedule in SCHEDULES:
        DDPMScheduler(beta_schedule=schedule)


@pytest.mark.parametrize(("schedule", "start", "end"), SETTINGS)
def test_zero_terminal_snr(schedule, start, end):
    ref = DDPMScheduler(beta_schedule=schedule, beta_start=start, beta_end=end, rescale_betas_zero_snr=True)
    ours = rescale_zero_terminal_snr(make_betas(schedule, beta_start=start, beta_end=end))
    assert torch.allclose(ours, ref.betas, rtol=1e-4, atol=1e-6)
    assert ours[-1].item() == ref.betas[-1].item() == 1.0


def test_add_noise_velocity_and_x0(gen):
    sched = DDPMScheduler()
    x0, noise = torch.randn(4, 4, 8, 8, generator=gen), torch.randn(4, 4, 8, 8, generator=gen)
    t = torch.tensor([0, 10, 500, 999])
    ab = sched.alphas_cumprod[t]
    assert torch.allclose(add_noise(x0, noise, ab), sched.add_noise(x0, noise, t), atol=1e-6)
    assert torch.allclose(v_target(x0, noise, ab), sched.get_velocity(x0, noise, t), atol=1e-6)
    # DDPMScheduler.step's "pred_original_sample" for an epsilon model is x0 from eps
    x_t = sched.add_noise(x0, noise, t)
    for i in range(4):
        out = DDPMScheduler().step(noise[i : i + 1], int(t[i]), x_t[i : i + 1], generator=gen)
        assert torch.allclose(
            predict_x0_from_eps(x_t[i : i + 1], noise[i : i + 1], ab[i]).clamp(-1, 1),
            out.pred_original_sample,  # diffusers clips x0 to [-1, 1] by default (clip_sample=True)
            atol=1e-4,
        )


def test_low_precision_add_noise_differs_on_purpose(gen):
    """diffusers casts alphas_cumprod to bf16 before the square roots; the book does not."""
    sched = DDPMScheduler()
    x0 = torch.randn(1, 4, 8, 8, generator=gen).bfloat16()
    noise = torch.randn(1, 4, 8, 8, generator=gen).bfloat16()
    t = torch.tensor([0])
    theirs = sched.add_noise(x0, noise, t)
    ours = add_noise(x0, noise, sched.alphas_cumprod[t])
    assert torch.equal(theirs, x0)  # at t = 0 the noise vanished in bf16
    assert not torch.equal(ours, x0)
    exact = (sched.alphas_cumprod[0].double().sqrt() * x0.double()) + (
        (1 - sched.alphas_cumprod[0].double()).sqrt() * noise.double()
    )
    assert (ours.double() - exact).abs().max() <= (theirs.double() - exact).abs().max()


@pytest.mark.parametrize(
    ("schedule", "start", "end", "lost"),
    [("linear", 1e-4, 0.02, list(range(10))), ("scaled_linear", 0.00085, 0.012, [0, 1])],
)
def test_bf16_add_noise_in_diffusers_returns_x0_at_the_first_timesteps(schedule, start, end, lost):
    """DDPMScheduler.add_noise on bf16 latents: x_t == x0 bit for bit at t = 0..9 (linear betas) and at
    t = 0, 1 (Stable Diffusion's scaled_linear betas); ours keeps noise at every t."""
    sched = DDPMScheduler(beta_schedule=schedule, beta_start=start, beta_end=end)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1000, 4, 4, 4, generator=g).bfloat16()
    eps = torch.randn(1000, 4, 4, 4, generator=g).bfloat16()
    t = torch.arange(1000)
    theirs = sched.add_noise(x0, eps, t)
    assert [i for i in range(1000) if torch.equal(theirs[i], x0[i])] == lost
    ours = add_noise(x0, eps, sched.alphas_cumprod)
    assert not any(torch.equal(ours[i], x0[i]) for i in range(1000))
    # the bf16 noise coefficient diffusers uses is off by 100% below t = 50 at worst, a few percent beyond;
    # read from diffusers itself: add_noise(x0 = 0, eps = 1) returns the coefficient
    exact = (1 - sched.alphas_cumprod.double()).sqrt()
    bf16 = dict(dtype=torch.bfloat16)
    coef = sched.add_noise(torch.zeros(1000, 1, **bf16), torch.ones(1000, 1, **bf16), t)[:, 0]
    rel = (coef.double() - exact).abs() / exact
    assert rel[:50].max() == 1.0 and rel[50:].max() < 0.03


def test_training_utils_snr_is_ours():
    """diffusers.training_utils.compute_snr (min-SNR loss weighting) is alpha_bar / (1 - alpha_bar)."""
    from diffusers.training_utils import compute_snr

    sched = DDPMScheduler()
    t = torch.tensor([0, 250, 500, 999])
    assert torch.allclose(compute_snr(sched, t), snr(sched.alphas_cumprod[t]), rtol=1e-5)


def test_flow_training_samples_sigma_logit_normally():
    """SD3's recipe draws sigma from a logit-normal density, not uniformly: the middle fifth of [0, 1] gets
    about 31% of draws, each outer fifth about 8%. The scheme is a choice: "none" draws uniformly."""
    from diffusers.training_utils import compute_density_for_timestep_sampling

    torch.manual_seed(0)
    u = compute_density_for_timestep_sampling("logit_normal", batch_size=200_000, logit_mean=0.0, logit_std=1.0)
    share = torch.histc(u, bins=5, min=0, max=1) / len(u)
    assert 0.30 < share[2] < 0.33 and share[0] < 0.1 and share[4] < 0.1
    u = compute_density_for_timestep_sampling("none", batch_size=200_000)
    share = torch.histc(u, bins=5, min=0, max=1) / len(u)
    assert all(0.19 < s < 0.21 for s in share.tolist())


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
def test_flow_matching_sigmas_interpolation_and_euler(shift, gen):
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(10)
    # diffusers 0.42.1 spaces the grid from 1 down to the *already shifted* smallest training
    # sigma (set at construction), then shifts the whole grid: the last sigma is shifted twice.
    sigma_min = shift_sigmas(torch.tensor(1 / 1000), shift).item()
    unshifted = torch.linspace(1.0, sigma_min, 10, dtype=torch.float64)
    assert torch.allclose(sched.sigmas[:-1].double(), shift_sigmas(unshifted, shift), atol=1e-6)
    assert sched.sigmas[-1].item() == 0.0

    x0, noise = torch.randn(2, 16, 4, 8, generator=gen), torch.randn(2, 16, 4, 8, generator=gen)
    t = sched.timesteps[[2, 7]]
    sigma = sched.sigmas[[2, 7]]
    assert torch.allclose(flow_interpolate(x0, noise, sigma), sched.scale_noise(x0, t, noise), atol=1e-6)

    x, v = torch.randn(1, 16, 4, 8, generator=gen), torch.randn(1, 16, 4, 8, generator=gen)
    sched.set_timesteps(10)
    theirs = sched.step(v, sched.timesteps[0], x).prev_sample
    ours = flow_euler_step(x, v, sched.sigmas[0].item(), sched.sigmas[1].item())
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_cfg_inside_a_real_tiny_pipeline():
    """StableDiffusionPipeline batch-doubles [uncond, cond] and combines them with CFG."""
    pipe = tiny_sd_pipeline()
    unet_outputs, step_inputs = [], []
    pipe.unet.register_forward_hook(lambda mod, args, out: unet_outputs.append(out[0].detach().clone()))
    original_step = pipe.scheduler.step

    def recording_step(model_output, *args, **kwargs):
        step_inputs.append(model_output.detach().clone())
        return original_step(model_output, *args, **kwargs)

    pipe.scheduler.step = recording_step
    cond, uncond = torch.randn(1, 5, 12), torch.randn(1, 5, 12)
    pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        guidance_scale=7.5,
        num_inference_steps=3,
        height=16,
        width=16,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    assert len(unet_outputs) == len(step_inputs) == 3  # one (batch-doubled) call per step
    for out, guided in zip(unet_outputs, step_inputs, strict=True):
        assert out.shape[0] == 2  # [uncond, cond] in one batch
        u, c = out.chunk(2)
        assert torch.allclose(cfg_combine(u, c, 7.5), guided, atol=1e-6)


def test_wan_transformer_defaults_used_on_the_calculators_page():
    """docs/calculators.md sizes attention with Wan 2.1 14B's 40 heads of 128 (and 40 layers)."""
    import inspect

    from diffusers import WanTransformer3DModel

    params = inspect.signature(WanTransformer3DModel.__init__).parameters
    assert params["num_attention_heads"].default == 40
    assert params["attention_head_dim"].default == 128
    assert params["num_layers"].default == 40
