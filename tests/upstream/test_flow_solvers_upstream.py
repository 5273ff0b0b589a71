"""Lab 11 (Flow Matching and Modern Samplers) against diffusers: every statement the page makes, run.

The exact problem: data N(m, d^2) per coordinate, whose velocity (GaussianVelocity) and whose
ODE solution (GaussianVelocity.exact_flow) are known in closed form. diffusers' schedulers are
stepped on it exactly as a pipeline steps them (``scheduler.step(model(x, t), t, x)``).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    DPMSolverMultistepScheduler,
    EDMEulerScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from infralens.calculators import latent_tokens  # noqa: E402
from infralens.diffusion import (  # noqa: E402
    SOLVERS,
    dynamic_shift,
    flow_match_sigmas,
    flow_multistep_sample,
    flow_solver_sigmas,
    karras_sigmas,
    shift_sigmas,
    solver_orders,
)
from infralens.nets import GaussianVelocity  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    # the multistep schedulers hand torch tensors to NumPy; NumPy 2 warns about their __array__
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

FIELD = GaussianVelocity(mean=0.5, std=0.6)  # the page's problem


def noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(seed))  # (B, C, H, W)


def scheduler(solver: str, *, shift: float = 1.0, order: int = 2, **config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if solver == "euler":
            return FlowMatchEulerDiscreteScheduler(shift=shift, **config)
        cls = DPMSolverMultistepScheduler if solver == "dpmsolver++" else UniPCMultistepScheduler
        return cls(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, solver_order=order, **config
        )


def run(sched, steps: int, x: torch.Tensor, *, feed: str = "timestep", model=FIELD) -> torch.Tensor:
    """A pipeline's loop: the model reads ``t`` (``feed="timestep"``) or the scheduler's exact 1000 sigma."""
    sched.set_timesteps(steps)
    for i, t in enumerate(sched.timesteps):
        read = t.float() if feed == "timestep" else sched.sigmas[i] * 1000
        x = sched.step(model(x, read.reshape(1)), t, x).prev_sample
    return x


def rms_error(sched, steps: int, x: torch.Tensor, **kw) -> float:
    out = run(sched, steps, x, **kw)
    exact = FIELD.exact_flow(x, sched.sigmas[0].item())  # the exact ODE from where the scheduler starts
    return (out - exact).pow(2).mean().sqrt().item()


# --- sigmas: which noise levels each scheduler visits ------------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
@pytest.mark.parametrize("steps", [1, 2, 4, 8, 20, 50])
def test_solver_sigmas_are_the_schedulers(solver, shift, steps):
    sched = scheduler(solver, shift=shift)
    sched.set_timesteps(steps)
    assert torch.allclose(flow_solver_sigmas(steps, solver=solver, shift=shift), sched.sigmas[:-1], atol=1e-7)
    assert sched.sigmas[-1].item() == 0.0


def test_the_three_grids_differ_at_the_same_step_count():
    """Euler starts at 1 and ends next to 0; DPM-Solver++ starts at 0.999; UniPC at 1 - 1e-6."""
    firsts, lasts = {}, {}
    for solver in SOLVERS:
        sched = scheduler(solver)
        sched.set_timesteps(4)
        firsts[solver], lasts[solver] = sched.sigmas[0].item(), sched.sigmas[-2].item()
    assert firsts == pytest.approx({"euler": 1.0, "dpmsolver++": 0.999, "unipc": 1 - 1e-6}, abs=1e-7)
    assert lasts == pytest.approx({"euler": 0.001, "dpmsolver++": 0.24975, "unipc": 0.25075}, abs=1e-6)


@pytest.mark.parametrize("shift", [3.0, 5.0])
def test_euler_shifts_its_last_sigma_twice(shift):
    """sigma_min is shifted when the scheduler is built, and set_timesteps shifts the grid ending there again."""
    sched = scheduler("euler", shift=shift)
    once = shift_sigmas(torch.tensor(1 / 1000, dtype=torch.float64), shift).item()
    twice = shift_sigmas(torch.tensor(once, dtype=torch.float64), shift).item()
    assert sched.sigma_min == pytest.approx(once, rel=1e-6)  # the attribute: shifted once
    sched.set_timesteps(4)
    assert sched.sigmas[-2].item() == pytest.approx(twice, rel=1e-6)  # the last sigma visited: twice
    assert sched.sigmas[-2].item() > 2 * once
    assert flow_solver_sigmas(4, solver="euler", shift=shift)[-1].item() == pytest.approx(twice, rel=1e-6)


def test_multistep_schedulers_hand_the_model_integer_timesteps():
    euler, dpm, unipc = (scheduler(s) for s in SOLVERS)
    for sched in (euler, dpm, unipc):
        sched.set_timesteps(4)
    assert euler.timesteps.dtype == torch.float32 and euler.timesteps.tolist() == pytest.approx([1000, 667, 334, 1])
    assert dpm.timesteps.dtype == unipc.timesteps.dtype == torch.int64
    assert dpm.timesteps.tolist() == [999, 749, 499, 249]  # 1000 sigma truncated: 499.5 -> 499
    assert unipc.timesteps.tolist() == [999, 750, 500, 250]
    assert dpm.timesteps.tolist() == torch.floor(dpm.sigmas[:-1].double() * 1000).long().tolist()


# --- the solvers: ours equals diffusers' step by step -------------------------------------------------


SOLVER_ORDERS = [("euler", 1)] + [(s, p) for s in ("dpmsolver++", "unipc") for p in (1, 2, 3)]


@pytest.mark.parametrize(("solver", "order"), SOLVER_ORDERS)
@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 8, 16, 30])
def test_multistep_sample_is_diffusers_loop(solver, order, shift, steps):
    x = noise()
    theirs = run(scheduler(solver, shift=shift, order=order), steps, x, feed="sigma")
    sigmas = flow_solver_sigmas(steps, solver=solver, shift=shift)
    ours = flow_multistep_sample(FIELD, x, sigmas, solver=solver, solver_order=None if solver == "euler" else order)
    assert torch.allclose(ours, theirs, atol=2e-5)


def _dpm_orders(sched, steps: int) -> list[int]:
    used: list[int] = []
    for k, name in enumerate(("dpm_solver_first_order_update", "multistep_dpm_solver_second_order_update",
                              "multistep_dpm_solver_third_order_update"), start=1):  # fmt: skip
        original = getattr(sched, name)

        def record(*args, _k=k, _f=original, **kwargs):
            used.append(_k)
            return _f(*args, **kwargs)

        setattr(sched, name, record)
    run(sched, steps, noise(), feed="sigma")
    return used


def _unipc_orders(sched, steps: int) -> list[int]:
    sched.set_timesteps(steps)
    x, used = noise(), []
    for i, t in enumerate(sched.timesteps):
        x = sched.step(FIELD(x, (sched.sigmas[i] * 1000).reshape(1)), t, x).prev_sample
        used.append(sched.this_order)
    return used


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 8, 14, 15, 20])
def test_orders_diffusers_uses(order, steps):
    dpm = _dpm_orders(scheduler("dpmsolver++", order=order), steps)
    assert tuple(dpm) == solver_orders(steps, solver="dpmsolver++", solver_order=order)
    unipc = _unipc_orders(scheduler("unipc", order=order), steps)
    assert tuple(unipc) == solver_orders(steps, solver="unipc", solver_order=order)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_dpm_second_order_step_is_the_pages_2m_line(shift):
    """One order-2 step of DPMSolverMultistepScheduler equals the page's 2M line on the same tensors.

    x' = (s'/s) x - (1 - s') (e^{-h} - 1) (x0 + (x0 - x0_prev) / (2 r)), r = h_prev / h, lambda = log((1 - s)/s).
    """
    sched = scheduler("dpmsolver++", shift=shift, order=2)
    sched.set_timesteps(8)
    x = noise()
    lam = lambda q: math.log((1 - q) / q)  # noqa: E731
    checked = 0
    for i, t in enumerate(sched.timesteps):
        x_new = sched.step(FIELD(x, (sched.sigmas[i] * 1000).reshape(1)), t, x).prev_sample
        if 1 <= i < len(sched.timesteps) - 1:  # the steps diffusers runs at order 2
            s_prev, s, s_next = (sched.sigmas[j].item() for j in (i - 1, i, i + 1))
            x0_prev, x0 = sched.model_outputs[-2], sched.model_outputs[-1]  # the converted x0_hat
            h, h_prev = lam(s_next) - lam(s), lam(s) - lam(s_prev)
            r = h_prev / h
            page = s_next / s * x - (1 - s_next) * math.expm1(-h) * (x0 + (x0 - x0_prev) / (2 * r))
            assert torch.allclose(x_new, page, atol=1e-5), i
            checked += 1
        x = x_new
    assert checked == 6


def test_dpm_third_order_is_second_order_below_five_steps():
    for steps in (2, 3, 4):
        third = run(scheduler("dpmsolver++", order=3), steps, noise())
        second = run(scheduler("dpmsolver++", order=2), steps, noise())
        assert torch.equal(third, second), steps
    third = run(scheduler("dpmsolver++", order=3), 8, noise())
    assert not torch.equal(third, run(scheduler("dpmsolver++", order=2), 8, noise()))


# --- errors on the exact problem: what the page reports -----------------------------------------------


def test_one_step_is_euler_for_every_solver():
    errors = {s: rms_error(scheduler(s), 1, noise(), feed="sigma") for s in SOLVERS}
    assert max(errors.values()) - min(errors.values()) < 1e-3


def test_higher_order_is_not_free_at_few_steps():
    """UniPC of order 3 against order 2 as the page reports them (the model reads the exact sigma)."""
    x = noise()
    err = {
        (p, n): rms_error(scheduler("unipc", order=p), n, x, feed="sigma")
        for p in (2, 3)
        for n in (6, 8, 12, 16, 20, 32)
    }
    assert err[3, 8] > 3 * err[2, 8]  # at 8 steps the third order costs accuracy on this problem
    assert err[3, 6] < err[2, 6] and err[3, 12] < err[2, 12]  # and wins on either side: no rule at few steps
    assert all(err[3, n] < err[2, n] / 2 for n in (16, 20, 32))  # from 16 steps on it pays, every time
    dpm2, dpm3 = (rms_error(scheduler("dpmsolver++", order=p), 12, x, feed="sigma") for p in (2, 3))
    assert dpm3 > dpm2
    # the same inversion at 8 steps when the model reads the integer timesteps, as in a pipeline
    assert rms_error(scheduler("unipc", order=3), 8, x) > 3 * rms_error(scheduler("unipc", order=2), 8, x)


def test_multistep_beats_euler_from_three_steps():
    x = noise()
    for steps in (3, 4, 8, 16):
        euler = rms_error(scheduler("euler"), steps, x)
        for solver in ("dpmsolver++", "unipc"):
            assert rms_error(scheduler(solver), steps, x) < 0.7 * euler, (solver, steps)


def test_shift_three_costs_accuracy_on_this_problem():
    """Every solver and order of the page's table, with shift 1 and with shift 3, from the same noise."""
    x = noise()
    runs = [("euler", 1)] + [(s, p) for s in ("dpmsolver++", "unipc") for p in (2, 3)]
    for solver, p in runs:
        for steps in (2, 3, 4, 6, 8, 12, 16, 32):
            plain = rms_error(scheduler(solver, order=p), steps, x, feed="sigma")
            shifted = rms_error(scheduler(solver, shift=3.0, order=p), steps, x, feed="sigma")
            if steps == 2 and solver == "euler":
                assert shifted < plain  # the one exception: two Euler steps, marginally better shifted
            else:
                assert shifted > plain, (solver, p, steps)


def test_integer_timesteps_move_the_result():
    """The model reads floor(1000 sigma) while the update uses sigma: on this problem it shows at 8 steps."""
    x = noise()
    by_t = rms_error(scheduler("unipc"), 8, x, feed="timestep")
    by_sigma = rms_error(scheduler("unipc"), 8, x, feed="sigma")
    assert by_t > 1.4 * by_sigma


# --- the traps ------------------------------------------------------------------------------------------


def test_from_config_of_a_flow_scheduler_gives_an_epsilon_scheduler(caplog):
    flow = FlowMatchEulerDiscreteScheduler(shift=3.0)
    for cls in (UniPCMultistepScheduler, DPMSolverMultistepScheduler):
        caplog.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            swapped = cls.from_config(flow.config)
        assert "{'shift': 3.0}" in caplog.text and "will be ignored" in caplog.text  # a log line, no error
        assert swapped.config.prediction_type == "epsilon"
        assert swapped.config.use_flow_sigmas is False and swapped.config.flow_shift == 1.0  # shift dropped
        swapped.set_timesteps(8)
        assert swapped.sigmas[0].item() > 100  # variance-exploding sigmas of the DDPM schedule
        x = noise()
        wrong = (run(swapped, 8, x) - FIELD.exact_flow(x, 1.0)).pow(2).mean().sqrt().item()  # from pure noise
        assert wrong > 1.0 and wrong > 10 * rms_error(scheduler("unipc", shift=3.0), 8, x)


@pytest.mark.parametrize("solver", ["dpmsolver++", "unipc"])
def test_v_prediction_misreads_a_flow_model(solver):
    """With flow sigmas, v_prediction gives x0 = (1 - sigma) x - sigma v instead of x - sigma v."""
    cls = DPMSolverMultistepScheduler if solver == "dpmsolver++" else UniPCMultistepScheduler
    sched = cls(prediction_type="v_prediction", use_flow_sigmas=True)
    sched.set_timesteps(8)
    sched._step_index = 0
    x, v = noise(1), noise(2)
    s = sched.sigmas[0]
    assert torch.allclose(sched.convert_model_output(v, sample=x), (1 - s) * x - s * v, atol=1e-6)
    wrong = rms_error(cls(prediction_type="v_prediction", use_flow_sigmas=True), 8, noise())
    assert wrong > 0.3 and wrong > 20 * rms_error(scheduler(solver), 8, noise())


@pytest.mark.parametrize("solver", ["dpmsolver++", "unipc"])
def test_flow_prediction_forms_x0(solver):
    sched = scheduler(solver, shift=3.0)
    sched.set_timesteps(8)
    sched._step_index = 3
    x, v = noise(1), noise(2)
    s = sched.sigmas[3]
    assert torch.allclose(sched.convert_model_output(v, sample=x), x - s * v, atol=1e-6)


def _latents_held(sched, shape) -> dict[str, int]:
    """Every tensor of the latent's shape the scheduler keeps between steps, by attribute."""
    held = {}
    for name, value in vars(sched).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        n = sum(isinstance(v, torch.Tensor) and tuple(v.shape) == shape for v in values)
        if n:
            held[name] = n
    return held


@pytest.mark.parametrize("order", [2, 3])
def test_multistep_memory_in_latents(order):
    """DPM-Solver++ keeps `solver_order` x0 predictions; UniPC those and the sample it will correct. One call a step."""
    calls = []

    def model(x, t):
        calls.append(t)
        return FIELD(x, t)

    for solver, expected in (("dpmsolver++", {"model_outputs": order}),
                             ("unipc", {"model_outputs": order, "last_sample": 1})):  # fmt: skip
        calls.clear()
        sched = scheduler(solver, order=order)
        sched.set_timesteps(8)
        x = noise()
        for i, t in enumerate(sched.timesteps):
            x = sched.step(model(x, t.float().reshape(1)), t, x).prev_sample
            if i >= order - 1:  # the history is full from step `order` on
                assert _latents_held(sched, (1, 4, 16, 16)) == expected, (solver, i)
        assert len(calls) == 8


def test_epsilon_default_of_the_multistep_schedulers():
    for cls in (UniPCMultistepScheduler, DPMSolverMultistepScheduler):
        assert cls().config.prediction_type == "epsilon" and cls().config.use_flow_sigmas is False


# --- shifts: SD3's fixed one, FLUX.1's from the token count, in the pipelines ---------------------------


@pytest.mark.parametrize("tokens", [1024, 4096])
def test_dynamic_shift_is_calculate_shift(tokens):
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    assert dynamic_shift(tokens) == pytest.approx(math.exp(calculate_shift(tokens)), rel=1e-12)
    sched = FlowMatchEulerDiscreteScheduler()
    config = (sched.config.base_image_seq_len, sched.config.max_image_seq_len, sched.config.base_shift)
    assert (*config, sched.config.max_shift) == (256, 4096, 0.5, 1.15)


def _first_step_sigmas(pipe, resolution: int, steps: int, **embeds) -> tuple[torch.Tensor, tuple]:
    """Run the pipeline for one denoiser call (then interrupt) and return its scheduler's sigmas."""
    seen = {}

    def stop(p, i, t, kwargs):
        seen["latents"] = tuple(kwargs["latents"].shape)
        p._interrupt = True
        return kwargs

    pipe.set_progress_bar_config(disable=True)
    pipe(height=resolution, width=resolution, num_inference_steps=steps, output_type="latent",
         guidance_scale=1.0, callback_on_step_end=stop, **embeds)  # fmt: skip
    return pipe.scheduler.sigmas.clone(), seen["latents"]


def test_flux_pipeline_shifts_by_its_packed_token_count():
    from diffusers import FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, pooled_projection_dim=8, axes_dims_rope=(2, 2, 4),
    )  # fmt: skip
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), vae=None, text_encoder=None,
        tokenizer=None, text_encoder_2=None, tokenizer_2=None, transformer=transformer,
    )  # fmt: skip
    steps = 28
    for res in (512, 1024):
        sigmas, latents = _first_step_sigmas(
            pipe, res, steps, prompt_embeds=torch.randn(1, 4, 16), pooled_prompt_embeds=torch.randn(1, 8)
        )
        tokens = latent_tokens("flux", height=res, width=res).tokens
        assert latents == (1, tokens, 64)  # packed: (B, H/16 * W/16, 4 C)
        grid = torch.linspace(1.0, 1 / steps, steps, dtype=torch.float64)  # FluxPipeline's own sigmas
        assert torch.allclose(sigmas[:-1], shift_sigmas(grid, dynamic_shift(tokens)).float(), atol=1e-6)


def _tiny_flux(scheduler):
    from diffusers import FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, pooled_projection_dim=8, axes_dims_rope=(2, 2, 4),
    )  # fmt: skip
    return FluxPipeline(
        scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
        transformer=transformer,
    )  # fmt: skip


FLUX_EMBEDS = {"prompt_embeds": torch.randn(1, 4, 16), "pooled_prompt_embeds": torch.randn(1, 8)}


def test_flux_schnell_scheduler_config_ignores_the_pipelines_mu():
    """FLUX.1-schnell's released config (use_dynamic_shifting=False, shift=1.0): the mu FluxPipeline computes
    is ignored, and both resolutions visit the pipeline's unshifted grid."""
    pipe = _tiny_flux(FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0))
    grid = torch.linspace(1.0, 1 / 8, 8, dtype=torch.float64).float()
    for res in (512, 1024):
        sigmas, _ = _first_step_sigmas(pipe, res, 8, **FLUX_EMBEDS)
        assert torch.allclose(sigmas[:-1], grid, atol=1e-6), res


def test_flux_pipeline_with_a_multistep_scheduler_needs_dynamic_shifting():
    """FluxPipeline always passes mu (and no sigmas when use_flow_sigmas is set)."""
    flow = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "flow_shift": 3.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dpm_fixed = _tiny_flux(DPMSolverMultistepScheduler(**flow))
        unipc_fixed = _tiny_flux(UniPCMultistepScheduler(**flow))
        dynamic = {
            solver: _tiny_flux(cls(**flow, use_dynamic_shifting=True))
            for solver, cls in (("dpmsolver++", DPMSolverMultistepScheduler), ("unipc", UniPCMultistepScheduler))
        }
    with pytest.raises(AssertionError):  # a bare assert in set_timesteps, no message
        _first_step_sigmas(dpm_fixed, 512, 8, **FLUX_EMBEDS)
    for res in (512, 1024):  # UniPC without it: mu silently ignored, the fixed flow_shift at every resolution
        sigmas, _ = _first_step_sigmas(unipc_fixed, res, 8, **FLUX_EMBEDS)
        assert torch.allclose(sigmas[:-1], flow_solver_sigmas(8, solver="unipc", shift=3.0), atol=1e-6)
    for solver, pipe in dynamic.items():  # with it: the shift exp(mu) of the token count, on each one's grid
        for res in (512, 1024):
            sigmas, _ = _first_step_sigmas(pipe, res, 8, **FLUX_EMBEDS)
            s = dynamic_shift(latent_tokens("flux", height=res, width=res).tokens)
            assert torch.allclose(sigmas[:-1], flow_solver_sigmas(8, solver=solver, shift=s), atol=1e-5), (solver, res)


def test_sd3_pipeline_shift_does_not_depend_on_resolution():
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=8, out_channels=16,
    )  # fmt: skip
    pipe = StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=None, text_encoder=None, tokenizer=None,
        text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None, transformer=transformer,
    )  # fmt: skip
    embeds = {"prompt_embeds": torch.randn(1, 4, 16), "pooled_prompt_embeds": torch.randn(1, 8)}
    at_512, _ = _first_step_sigmas(pipe, 512, 28, **embeds)
    at_1024, _ = _first_step_sigmas(pipe, 1024, 28, **embeds)
    assert torch.equal(at_512, at_1024)
    assert torch.allclose(at_512, flow_match_sigmas(28, shift=3.0), atol=2e-7)


# --- Karras / EDM sigmas -------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 10, 25])
def test_karras_sigmas_are_edm(steps):
    edm = EDMEulerScheduler()
    edm.set_timesteps(steps)
    assert (edm.config.sigma_min, edm.config.sigma_max, edm.config.rho) == (0.002, 80.0, 7.0)
    assert torch.allclose(edm.sigmas[:-1].double(), karras_sigmas(steps, 0.002, 80.0), rtol=1e-5)


@pytest.mark.parametrize("steps", [2, 10, 25])
def test_use_karras_sigmas_keeps_the_ends_of_the_training_sigmas(steps):
    euler = EulerDiscreteScheduler(use_karras_sigmas=True)
    euler.set_timesteps(steps)
    table = ((1 - euler.alphas_cumprod) / euler.alphas_cumprod).sqrt().double()  # the training sigmas
    ours = karras_sigmas(steps, table[0].item(), table[-1].item())
    assert torch.allclose(euler.sigmas[:-1].double(), ours, rtol=1e-5)


def test_karras_on_a_flow_scheduler_keeps_only_the_ends_of_the_shift():
    steps = 10
    shifted = FlowMatchEulerDiscreteScheduler(shift=3.0)
    shifted.set_timesteps(steps)
    karras = FlowMatchEulerDiscreteScheduler(shift=3.0, use_karras_sigmas=True)
    karras.set_timesteps(steps)
    ends = shifted.sigmas[[-2, 0]].tolist()  # smallest and largest of the shifted grid
    assert torch.allclose(karras.sigmas[:-1].double(), karras_sigmas(steps, *ends), atol=1e-6)
    mid = steps // 2
    assert shifted.sigmas[mid].item() > 0.6 and karras.sigmas[mid].item() < 0.2
