"""Lab 04 facts against diffusers: where its flow-matching schedulers coincide with DiffSynth's, and where not.

(DiffSynth-Studio's own loop, ``WanVideoPipeline.__call__``, is run against
``flow_sample`` in ``test_wan_pipeline_upstream.py``.)

* Where diffusers' ``FlowMatchEulerDiscreteScheduler`` coincides with DiffSynth
  (the Wan grid passed as ``sigmas`` with a static shift), its sigmas and its
  Euler loop agree with infralens.
* ``dynamic_shift`` is diffusers' ``calculate_shift`` (FLUX.1) followed by the
  exponential time shift, which equals ``shift_sigmas`` with ``s = exp(mu)``.
* The scheduler diffusers documents for Wan, ``UniPCMultistepScheduler`` with
  ``flow_prediction``, visits integer timesteps on another grid than DiffSynth's.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from infralens.diffusion import dynamic_shift, flow_sample, flow_sigmas, shift_sigmas
from infralens.nets import TinyDenoiser

pytestmark = pytest.mark.upstream


def _diffusers_scheduler(**config):
    diffusers = pytest.importorskip("diffusers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diffusers.FlowMatchEulerDiscreteScheduler(**config)


@pytest.mark.parametrize(("steps", "shift"), [(1, 5.0), (10, 5.0), (30, 3.0)])
def test_diffusers_coincides_on_the_wan_grid(steps, shift):
    sched = _diffusers_scheduler(shift=shift)
    grid = torch.linspace(1.0, 0.0, steps + 1)[:-1]  # DiffSynth's Wan grid before the shift
    sched.set_timesteps(sigmas=grid.numpy())
    ours = flow_sigmas("Wan", steps, shift=shift)
    assert torch.allclose(sched.sigmas[:-1], ours, atol=1e-6)
    assert sched.sigmas[-1].item() == 0.0  # diffusers appends the final sigma = 0 explicitly
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 8, 8, generator=g)
    text = torch.randn(1, 6, 16, generator=g)
    model = TinyDenoiser()
    theirs = x
    for t in sched.timesteps:
        with torch.no_grad():
            v = model(theirs, t.reshape(1), text)
        theirs = sched.step(v, t, theirs).prev_sample
    assert torch.allclose(flow_sample(model, x, ours, text), theirs, atol=1e-4)


@pytest.mark.parametrize("seq_len", [256, 1024, 4096, 6000])
def test_dynamic_shift_is_calculate_shift_and_exponential_time_shift(seq_len):
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    mu = calculate_shift(seq_len)
    assert dynamic_shift(seq_len) == pytest.approx(math.exp(mu), rel=1e-12)
    steps = 28
    sched = _diffusers_scheduler(use_dynamic_shifting=True)
    grid = torch.linspace(1.0, 1 / steps, steps, dtype=torch.float64)  # FluxPipeline's sigmas
    sched.set_timesteps(sigmas=grid.numpy(), mu=mu)
    assert torch.allclose(sched.sigmas[:-1], shift_sigmas(grid, dynamic_shift(seq_len)).float(), atol=1e-6)


def test_diffusers_documented_wan_scheduler_is_not_diffsynths():
    """``WanPipeline``'s docstring swaps in ``UniPCMultistepScheduler(flow_shift=3.0)`` for 480p."""
    diffusers = pytest.importorskip("diffusers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unipc = diffusers.UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        )
    unipc.set_timesteps(50)
    assert unipc.timesteps.dtype == torch.int64 and unipc.timesteps[0].item() == 999  # integers, from 999
    ours = flow_sigmas("Wan", 50, shift=3.0)  # DiffSynth's grid at the same shift
    assert len(unipc.timesteps) == len(ours) and not torch.allclose(unipc.sigmas[:-1].float(), ours, atol=1e-3)
