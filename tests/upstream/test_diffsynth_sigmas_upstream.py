"""DiffSynth-Studio's Wan and FLUX.1 sigma templates and its Euler step, against infralens."""

from __future__ import annotations

import pytest
import torch

from infralens.diffusion import flow_euler_step, flow_interpolate, flow_sigmas

from ._diffsynth import load_module

pytestmark = pytest.mark.upstream


@pytest.fixture(scope="module")
def FlowMatchScheduler():  # noqa: N802 - the upstream class
    return load_module("diffusion/flow_match.py").FlowMatchScheduler


@pytest.mark.parametrize("template", ["Wan", "FLUX.1"])
@pytest.mark.parametrize("steps", [1, 10, 50])
@pytest.mark.parametrize("shift", [None, 1.0, 3.0, 7.0])
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_templates(FlowMatchScheduler, template, steps, shift, strength):
    sched = FlowMatchScheduler(template)
    kwargs = {} if shift is None else {"shift": shift}
    sched.set_timesteps(steps, denoising_strength=strength, **kwargs)
    ours = flow_sigmas(template, steps, shift=shift, denoising_strength=strength)
    assert torch.allclose(ours, sched.sigmas.float(), atol=1e-6)
    assert torch.allclose(ours * 1000, sched.timesteps.float(), atol=1e-3)


def test_euler_step_and_add_noise(FlowMatchScheduler):
    sched = FlowMatchScheduler("Wan")
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(1, 16, 3, 8, 8, generator=g), torch.randn(1, 16, 3, 8, 8, generator=g)
    sigmas = [*flow_sigmas("Wan", 10).tolist(), 0.0]  # the last step goes to sigma = 0
    for i, t in enumerate(sched.timesteps):
        theirs = sched.step(v, t, x)
        assert torch.allclose(flow_euler_step(x, v, sigmas[i], sigmas[i + 1]), theirs, atol=1e-5)
    x0, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = sched.timesteps[3]
    assert torch.allclose(flow_interpolate(x0, noise, sigmas[3]), sched.add_noise(x0, noise, t), atol=1e-6)
