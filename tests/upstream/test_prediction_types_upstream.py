"""What a denoiser's output means to diffusers' schedulers, flow models included (issue 14 #5).

Run on random tensors with diffusers 0.42.1: which ``prediction_type`` values each scheduler takes and
what it does with them; that the flow-matching velocity ``eps - x0`` (SD3, FLUX.1, Wan) is a different
tensor from Salimans-Ho ``v``; that the flow Euler step never forms an ``x0`` estimate; and the Wan
pipeline docstring's scheduler swap, which silently builds an epsilon sampler from a flow config.
"""

from __future__ import annotations

import math
import typing

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

from infralens.diffusion import (  # noqa: E402
    PREDICTION_TYPES,
    add_noise,
    flow_interpolate,
    flow_match_sigmas,
    flow_target,
    v_target,
)

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def pair(seed=0, shape=(1, 16, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def accepted(cls) -> tuple[str, ...] | None:
    """The values of ``prediction_type`` in the constructor's signature, or None if it has no such parameter."""
    import inspect

    param = inspect.signature(cls.__init__).parameters.get("prediction_type")
    if param is None:
        return None
    return typing.get_args(param.annotation)


def test_unipc_and_dpm_solver_accept_flow_prediction_and_ddpm_ddim_do_not():
    """The fourth value: UniPC and DPM-Solver take ``flow_prediction``; DDPM/DDIM take the three of PREDICTION_TYPES."""
    for cls in (UniPCMultistepScheduler, DPMSolverMultistepScheduler):
        assert set(accepted(cls)) == {*PREDICTION_TYPES, "flow_prediction"}
    for cls in (DDPMScheduler, DDIMScheduler):
        assert set(accepted(cls)) == set(PREDICTION_TYPES)
    # the Literal is not enforced: a DDPMScheduler configured for flow builds, and fails only when it steps
    sched = DDPMScheduler(prediction_type="flow_prediction")
    sched.set_timesteps(5)
    with pytest.raises(ValueError, match="prediction_type given as flow_prediction"):
        sched.step(torch.zeros(1, 4, 2, 2), sched.timesteps[0], torch.zeros(1, 4, 2, 2))


def test_flow_match_schedulers_have_no_prediction_type():
    """SD3's and FLUX.1's schedulers read the output as a flow velocity, with no setting to say otherwise."""
    for cls in (FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler):
        assert accepted(cls) is None
        assert "prediction_type" not in cls().config
        assert not hasattr(cls, "add_noise") and not hasattr(cls, "get_velocity")  # the forward map is scale_noise


def test_flow_euler_step_moves_along_the_velocity_and_forms_no_x0():
    """A perfect ``eps - x0`` lands on the forward process at the next sigma; the output has only prev_sample."""
    x0, eps = pair(0)
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(10)
    s0, s1 = sched.sigmas[0].item(), sched.sigmas[1].item()
    x = sched.scale_noise(x0, sched.timesteps[:1], eps)
    assert torch.allclose(x, flow_interpolate(x0, eps, s0), atol=1e-6)  # x = (1 - s) x0 + s eps
    out = sched.step(flow_target(x0, eps), sched.timesteps[0], x)
    assert list(out.keys()) == ["prev_sample"]  # no pred_original_sample: no x0 estimate is formed
    assert torch.allclose(out.prev_sample, flow_interpolate(x0, eps, s1), atol=1e-5)


@pytest.mark.parametrize("cls", [UniPCMultistepScheduler, DPMSolverMultistepScheduler])
def test_flow_prediction_is_read_as_eps_minus_x0(cls):
    """With ``flow_prediction`` the multistep solvers recover x0 = x - sigma * (eps - x0) from the velocity."""
    x0, eps = pair(1)
    sched = cls(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    sched.set_timesteps(10)
    sigma = sched.sigmas[0].item()
    x = flow_interpolate(x0, eps, sigma)
    sched._init_step_index(sched.timesteps[0])
    x0_hat = sched.convert_model_output(flow_target(x0, eps), sample=x)
    assert torch.allclose(x0_hat, x - sigma * flow_target(x0, eps), atol=1e-6)
    assert torch.allclose(x0_hat, x0, atol=1e-5)


def test_flow_velocity_is_not_salimans_ho_v():
    """At the same noise level eps - x0 and v point in different directions (equal only at sigma = 0.5).

    Matched noise level: x_sigma = (1 - s) x0 + s eps is n * x_t with n = hypot(1 - s, s) and
    sqrt(alpha_bar) = (1 - s) / n. Then ||eps - x0|| / ||v|| is sqrt(2) in expectation, and a v-prediction
    scheduler fed eps - x0 forms a wrong x0.
    """
    x0, eps = pair(2)
    u = flow_target(x0, eps)
    cosines = {}
    for s in (0.1, 0.5, 0.9):
        ab = ((1 - s) / math.hypot(1 - s, s)) ** 2
        v = v_target(x0, eps, ab)
        cosines[s] = torch.nn.functional.cosine_similarity(v.flatten(), u.flatten(), dim=0).item()
        assert abs((u.norm() / v.norm()).item() - math.sqrt(2)) < 0.05
    assert cosines[0.5] > 0.9999 and cosines[0.1] < 0.85 and cosines[0.9] < 0.85

    ddim = DDIMScheduler(prediction_type="v_prediction", clip_sample=False)
    ddim.set_timesteps(10)
    t = int(ddim.timesteps[2])  # 700
    ab = ddim.alphas_cumprod[t].item()
    x_t = add_noise(x0, eps, ab)
    right = ddim.step(v_target(x0, eps, ab), t, x_t).pred_original_sample
    wrong = ddim.step(u, t, x_t).pred_original_sample
    assert (right - x0).pow(2).mean().sqrt() < 1e-5
    assert (wrong - x0).pow(2).mean().sqrt() > 0.5


def test_wan_docstring_swap_from_a_flow_match_config_builds_an_epsilon_sampler():
    """``UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=...)`` on the FlowMatchEuler config
    WanPipeline is annotated with: prediction_type epsilon, no flow sigmas, the default linear betas (VP sigmas
    up to 157), and no error. Built for flow, UniPC starts at timestep 999 on a grid unlike FlowMatchEuler's."""
    swapped = UniPCMultistepScheduler.from_config(FlowMatchEulerDiscreteScheduler(shift=3.0).config, flow_shift=5.0)
    config = swapped.config
    assert (config.prediction_type, config.use_flow_sigmas, config.beta_schedule) == ("epsilon", False, "linear")
    swapped.set_timesteps(10)
    assert swapped.timesteps[0].item() == 999 and swapped.sigmas[0].item() > 150

    flow = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    flow.set_timesteps(10)
    assert flow.timesteps.dtype == torch.int64 and flow.timesteps[0].item() == 999
    assert flow.sigmas[-1].item() == 0.0 and abs(flow.sigmas[-2].item() - 0.2519) < 1e-3
    fm = flow_match_sigmas(10, shift=3.0)
    assert abs(fm[-2].item() - 0.0089) < 1e-3  # FlowMatchEuler's last non-zero sigma
    assert (flow.sigmas - fm).abs().max() > 0.2

    kept = UniPCMultistepScheduler.from_config(flow.config, flow_shift=5.0)  # a flow config stays a flow config
    assert kept.config.prediction_type == "flow_prediction" and kept.config.use_flow_sigmas is True
