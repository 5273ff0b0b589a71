"""Cross-check the inference time axis against diffusers' ``set_timesteps`` and ``scale_model_input``.

``DDPMScheduler``, ``DDIMScheduler``, ``EulerDiscreteScheduler`` and ``FlowMatchEulerDiscreteScheduler``
with their default training schedules. Where diffusers 0.42.1 behaves in a way the book calls out (an
extra timestep -1 from ``trailing`` for some step counts, DDIM's previous timestep ignoring the spacing,
an offset that leaves the trained range), the test asserts that behaviour, so the page cannot outlive it.
Also the grids the track's flow families run (FLUX.1's resolution-dependent one), the loop counter passed
as a timestep, Euler's starting scale for Stable Diffusion's betas, and zero terminal SNR in Euler. The
page's source links are checked by ``test_citations.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.pipelines.flux.pipeline_flux import calculate_shift  # noqa: E402

from infralens.diffusion import (  # noqa: E402
    TIMESTEP_SPACINGS,
    ddim_step,
    dynamic_shift,
    euler_sigmas,
    flow_match_sigmas,
    inference_timesteps,
    scale_model_input,
    shift_sigmas,
)

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    # EulerDiscreteScheduler hands torch tensors to np.interp; NumPy 2 warns about their __array__
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

ALL_N = range(1, 1001)


def trailing_extra():
    """Step counts for which diffusers' trailing grid has N + 1 entries (NumPy's arange overshoots)."""
    extra = []
    for n in ALL_N:
        sched = DDIMScheduler(timestep_spacing="trailing")
        sched.set_timesteps(n)
        if len(sched.timesteps) != n:
            extra.append(n)
    return extra


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_ddim_and_ddpm_timesteps_for_every_step_count(spacing):
    extra = []
    for n in ALL_N:
        ddim, ddpm = DDIMScheduler(timestep_spacing=spacing), DDPMScheduler(timestep_spacing=spacing)
        ddim.set_timesteps(n)
        ddpm.set_timesteps(n)
        assert torch.equal(ddim.timesteps, ddpm.timesteps)
        ours = inference_timesteps(n, timestep_spacing=spacing)
        theirs = ddim.timesteps
        if len(theirs) == n:
            assert torch.equal(ours, theirs), n
        else:  # the same grid, plus one more entry: -1
            assert spacing == "trailing" and len(theirs) == n + 1 and theirs[-1].item() == -1
            assert torch.equal(ours, theirs[:n])
            extra.append(n)
    if spacing == "trailing":
        assert extra[:3] == [61, 103, 121] and len(extra) == 62
    else:
        assert extra == []


@pytest.mark.parametrize("offset", [1, 3])
def test_steps_offset_shifts_leading_only(offset):
    for n in (1, 7, 50, 996):  # at 996 steps the stride is 1: timesteps 995 + offset down to offset
        sched = DDIMScheduler(steps_offset=offset)
        sched.set_timesteps(n)
        assert torch.equal(inference_timesteps(n, steps_offset=offset), sched.timesteps)
    for spacing in ("trailing", "linspace"):
        sched = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
        sched.set_timesteps(50)
        assert torch.equal(inference_timesteps(50, timestep_spacing=spacing), sched.timesteps)
    # 1000 leading steps with an offset leave the trained range in diffusers; the library refuses
    sched = DDIMScheduler(steps_offset=offset)
    sched.set_timesteps(1000)
    assert sched.timesteps[0].item() == 999 + offset
    with pytest.raises(ValueError, match="steps_offset must keep the first timestep below"):
        inference_timesteps(1000, steps_offset=offset)


def test_defaults_the_page_states():
    assert DDPMScheduler().config.timestep_spacing == DDIMScheduler().config.timestep_spacing == "leading"
    assert DDPMScheduler().config.steps_offset == DDIMScheduler().config.steps_offset == 0
    assert EulerDiscreteScheduler().config.timestep_spacing == "linspace"
    assert DDPMScheduler().init_noise_sigma == DDIMScheduler().init_noise_sigma == 1.0
    for cls in (DDPMScheduler, DDIMScheduler):
        sched = cls()
        sched.set_timesteps(50)
        assert sched.timesteps.max().item() == 980 and 999 not in sched.timesteps.tolist()
    euler = EulerDiscreteScheduler()
    euler.set_timesteps(50)
    assert euler.timesteps[0].item() == 999.0 and euler.timesteps[-1].item() == 0.0


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
@pytest.mark.parametrize("n", [1, 2, 7, 25, 50, 999, 1000])
def test_euler_timesteps_sigmas_and_input_scaling(spacing, n):
    sched = EulerDiscreteScheduler(timestep_spacing=spacing)
    sched.set_timesteps(n)
    ours_t = inference_timesteps(n, timestep_spacing=spacing, discrete=False)
    assert torch.equal(ours_t, sched.timesteps)
    ours_s = euler_sigmas(sched.alphas_cumprod, ours_t)
    assert torch.allclose(ours_s, sched.sigmas, rtol=1e-5, atol=1e-7)
    init = ours_s.max() if spacing != "leading" else (ours_s.max() ** 2 + 1).sqrt()
    assert init.item() == pytest.approx(float(sched.init_noise_sigma), rel=1e-5)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(n)) * sched.init_noise_sigma
    for i in sorted({0, n // 2, n - 1}):
        sched._step_index = i  # the index scale_model_input reads (set by step() in a real loop)
        theirs = sched.scale_model_input(x, sched.timesteps[i])
        assert torch.allclose(scale_model_input(x, ours_s[i].item()), theirs, rtol=1e-5, atol=1e-6)


def test_the_extra_trailing_timestep_is_stepped_as_the_noisiest_one():
    """DDIMScheduler.step at t = -1 reads alphas_cumprod[-1], the noisiest training level."""
    sched = DDIMScheduler(timestep_spacing="trailing", clip_sample=False)
    sched.set_timesteps(61)
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    theirs = sched.step(out, int(sched.timesteps[-1]), x).prev_sample
    ours = ddim_step(x, out, sched.alphas_cumprod[999], 1.0).prev_sample
    assert torch.allclose(theirs, ours, atol=1e-3 * (1 + ours.abs().max()))


def test_euler_trailing_extra_step_too():
    sched = EulerDiscreteScheduler(timestep_spacing="trailing")
    sched.set_timesteps(61)
    assert len(sched.timesteps) == 62 and sched.timesteps[-1].item() == -1.0
    assert torch.equal(inference_timesteps(61, timestep_spacing="trailing", discrete=False), sched.timesteps[:61])


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0, 7.0])
@pytest.mark.parametrize("n", [1, 4, 28, 50])
def test_flow_match_sigmas_and_timesteps(shift, n):
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(n)
    ours = flow_match_sigmas(n, shift=shift)
    assert torch.allclose(ours, sched.sigmas, atol=2e-7)
    assert torch.allclose(1000 * ours[:-1], sched.timesteps, atol=1e-4)
    assert sched.timesteps[0].item() == 1000.0


def test_ddim_previous_timestep_ignores_the_spacing_and_ddpm_does_not():
    """On the linspace grid DDIMScheduler.step goes from 979 to 959, while the next listed timestep is 958."""
    ddim = DDIMScheduler(timestep_spacing="linspace", clip_sample=False)
    ddim.set_timesteps(50)
    assert ddim.timesteps[1:3].tolist() == [979, 958]
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    theirs = ddim.step(out, 979, x).prev_sample
    ab = ddim.alphas_cumprod
    by_rule = ddim_step(x, out, ab[979], ab[959]).prev_sample
    by_list = ddim_step(x, out, ab[979], ab[958]).prev_sample
    assert torch.allclose(theirs, by_rule, atol=1e-5)
    assert not torch.allclose(theirs, by_list, atol=1e-4)
    ddpm = DDPMScheduler(timestep_spacing="linspace")
    ddpm.set_timesteps(50)
    assert int(ddpm.previous_timestep(979)) == 958


def test_the_loop_counter_is_accepted_by_ddim_and_refused_by_euler_and_flow_match():
    """``step(out, i, x)`` with the loop index: DDIM indexes alpha_bar[i] silently, Euler-type schedulers raise."""
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    ddim = DDIMScheduler(clip_sample=False)
    ddim.set_timesteps(50)
    right = ddim.step(out, int(ddim.timesteps[0]), x).prev_sample
    wrong = ddim.step(out, 0, x).prev_sample  # accepted
    assert (right - wrong).pow(2).mean().sqrt() > 0.1
    for cls in (EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler):
        sched = cls()
        sched.set_timesteps(50)
        with pytest.raises(ValueError, match="integer indices"):
            sched.step(out, 0, x)


SD_BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def test_euler_starting_scale_depends_on_the_betas_and_the_spacing():
    """157.4 for the linear betas 1e-4..0.02; 14.6 for Stable Diffusion's scaled_linear betas (linspace);
    with leading spacing and steps_offset=1 the first sigma is 13.12 and init_noise_sigma sqrt(13.12^2 + 1)."""
    cases = {
        "linear": (dict(), 157.4, 157.4),
        "sd": (SD_BETAS, 14.61, 14.61),
        "sd leading+1": ({**SD_BETAS, "timestep_spacing": "leading", "steps_offset": 1}, 13.12, 13.16),
    }
    for kwargs, sigma_max, init in cases.values():
        sched = EulerDiscreteScheduler(**kwargs)
        sched.set_timesteps(50)
        assert abs(sched.sigmas[0].item() - sigma_max) < 0.01
        assert abs(float(sched.init_noise_sigma) - init) < 0.01


def test_zero_terminal_snr_in_euler_is_clamped_not_infinite():
    """Euler clamps the zero alpha_bar to 2**-24, so its first sigma is 4096 (not infinite); InfraLens refuses."""
    sched = EulerDiscreteScheduler(**SD_BETAS, rescale_betas_zero_snr=True, timestep_spacing="trailing")
    sched.set_timesteps(30)
    assert sched.alphas_cumprod[-1].item() == 2.0**-24
    assert sched.sigmas[0].item() == 4096.0
    with pytest.raises(ValueError, match="alpha_bar must lie in"):
        euler_sigmas(torch.tensor([0.5, 0.0]), torch.tensor([1.0]))


FLUX_SHIFT = dict(base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)


@pytest.mark.parametrize(("tokens", "middle", "last"), [(4096, 0.7595, 0.1047), (1024, 0.6525, 0.0650)])
def test_flux_grid_depends_on_the_resolution(tokens, middle, last):
    """FluxPipeline passes sigmas=linspace(1, 1/N, N) and mu from the packed token count: 1024x1024 and 512x512
    give other grids than set_timesteps(N) with a fixed shift of 3; shift_sigmas with dynamic_shift reproduces them."""
    n = 28
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, **FLUX_SHIFT)
    mu = calculate_shift(tokens)
    assert abs(dynamic_shift(tokens) - np.exp(mu)) < 1e-6
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    assert abs(sched.sigmas[n // 2].item() - middle) < 1e-4 and abs(sched.sigmas[-2].item() - last) < 1e-4
    ours = shift_sigmas(torch.linspace(1.0, 1 / n, n, dtype=torch.float64), dynamic_shift(tokens))
    assert torch.allclose(ours, sched.sigmas[:-1].double(), atol=1e-6)  # FLUX's grid is our shift with s = e^mu
    fixed = flow_match_sigmas(n, shift=3.0)
    assert abs(fixed[n // 2].item() - 0.7371) < 1e-4 and abs(fixed[-2].item() - 0.0089) < 1e-4
    with pytest.raises(ValueError, match="`mu` must be passed"):
        FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True).set_timesteps(n)
