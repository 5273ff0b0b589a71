"""Lab 04 facts against the real packages: the sampling loop, its call count, and dynamic shift.

* ``flow_sample`` gives the latents of DiffSynth-Studio's Wan loop (the lines of
  ``WanVideoPipeline.__call__``: a positive call, a negative one when
  ``cfg_scale != 1``, ``nega + cfg * (posi - nega)``, ``FlowMatchScheduler.step``)
  and makes the same number of denoiser calls.
* Where diffusers' ``FlowMatchEulerDiscreteScheduler`` coincides with DiffSynth
  (the Wan grid passed as ``sigmas`` with a static shift), its sigmas and its
  Euler loop agree with infralens.
* ``dynamic_shift`` is diffusers' ``calculate_shift`` (FLUX.1) followed by the
  exponential time shift, which equals ``shift_sigmas`` with ``s = exp(mu)``.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from infralens.diffusion import (
    GaussianVelocity,
    TinyDenoiser,
    dynamic_shift,
    flow_sample,
    flow_sigmas,
    shift_sigmas,
)

from ._diffsynth import load_module

pytestmark = pytest.mark.upstream


class Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, latents, timesteps, text):
        self.calls += 1
        return self.inner(latents, timesteps, text)


def diffsynth_loop(model, latents, posi, nega, cfg_scale, steps, shift):
    """The denoising lines of DiffSynth-Studio's WanVideoPipeline.__call__, with ``model`` as model_fn."""
    scheduler = load_module("diffusion/flow_match.py").FlowMatchScheduler("Wan")
    scheduler.set_timesteps(steps, denoising_strength=1.0, shift=shift)
    for progress_id, timestep in enumerate(scheduler.timesteps):
        t = timestep.unsqueeze(0)
        with torch.no_grad():
            noise_pred_posi = model(latents, t, posi)
            if cfg_scale != 1.0:
                noise_pred_nega = model(latents, t, nega)
                noise_pred = noise_pred_nega + cfg_scale * (noise_pred_posi - noise_pred_nega)
            else:
                noise_pred = noise_pred_posi
        latents = scheduler.step(noise_pred, scheduler.timesteps[progress_id], latents)
    return latents


@pytest.mark.parametrize(("cfg_scale", "steps", "shift"), [(1.0, 4, 5.0), (5.0, 4, 5.0), (3.0, 7, 3.0)])
def test_loop_matches_diffsynth(cfg_scale, steps, shift):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    posi, nega = torch.randn(1, 6, 16, generator=g), torch.randn(1, 6, 16, generator=g)
    theirs_model, ours_model = Counting(TinyDenoiser()), Counting(TinyDenoiser())
    theirs = diffsynth_loop(theirs_model, x, posi, nega, cfg_scale, steps, shift)
    ours = flow_sample(
        ours_model, x, flow_sigmas("Wan", steps, shift=shift), posi, negative_text=nega, guidance_scale=cfg_scale
    )
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert ours_model.calls == theirs_model.calls == steps * (1 if cfg_scale == 1.0 else 2)


def test_diffsynth_loop_lands_on_a_point_mass():
    field = GaussianVelocity(mean=-0.25, std=0.0)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    out = diffsynth_loop(field, x, None, None, 1.0, 6, 5.0)
    assert torch.allclose(out, torch.full_like(out, -0.25), atol=1e-5)


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


def _call_defaults(relative: str, cls: str) -> dict[str, object]:
    """Keyword defaults of ``cls.__call__`` in a DiffSynth pipeline file, read with ``ast`` (no import)."""
    import ast

    from ._diffsynth import package_dir

    tree = ast.parse((package_dir() / relative).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__call__":
                    args = item.args.args[-len(item.args.defaults) :]
                    found = {}
                    for a, d in zip(args, item.args.defaults, strict=True):
                        try:
                            found[a.arg] = ast.literal_eval(d)
                        except ValueError:
                            continue  # a non-literal default such as progress_bar_cmd=tqdm
                    return found
    raise LookupError(f"{cls}.__call__ not in diffsynth/{relative}")


def test_pipeline_defaults_quoted_on_the_page():
    wan = _call_defaults("pipelines/wan_video.py", "WanVideoPipeline")
    assert (wan["num_inference_steps"], wan["sigma_shift"], wan["cfg_scale"]) == (50, 5.0, 5.0)
    assert wan["cfg_merge"] is False and wan["switch_DiT_boundary"] == 0.875
    flux = _call_defaults("pipelines/flux_image.py", "FluxImagePipeline")
    assert (flux["cfg_scale"], flux["embedded_guidance"], flux["sigma_shift"]) == (1.0, 3.5, None)
