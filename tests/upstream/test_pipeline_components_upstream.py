"""Lab 06 facts against diffusers: the component lists, the DDIM scheduler, the pipelines' plumbing.

* ``DIFFUSERS_COMPONENTS`` equals, for each class, the ``__init__`` arguments
  without a default plus ``_optional_components``, in constructor order;
* ``TinyDDIMScheduler`` builds the timesteps of ``DDIMScheduler()`` (default
  config) and takes the same steps on random tensors;
* diffusers' pipelines derive ``vae_scale_factor`` from the VAE's block count
  and expose ``components``, as the miniature pipeline does.
"""

from __future__ import annotations

import inspect
import warnings

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from infralens.pipelines import DIFFUSERS_COMPONENTS, TinyDDIMScheduler  # noqa: E402

pytestmark = pytest.mark.upstream


@pytest.mark.parametrize("name", list(DIFFUSERS_COMPONENTS))
def test_component_lists(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = getattr(diffusers, name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    expected = tuple(
        p.name for p in params if p.default is inspect.Parameter.empty or p.name in cls._optional_components
    )
    assert DIFFUSERS_COMPONENTS[name] == expected


@pytest.mark.parametrize("steps", [1, 4, 10, 50])
def test_ddim_scheduler_matches_diffusers(steps):
    theirs, ours = diffusers.DDIMScheduler(), TinyDDIMScheduler()
    assert theirs.config.clip_sample and theirs.config.set_alpha_to_one and theirs.config.beta_schedule == "linear"
    theirs.set_timesteps(steps)
    ours.set_timesteps(steps)
    assert torch.equal(theirs.timesteps, ours.timesteps)
    torch.manual_seed(steps)
    x = torch.randn(2, 4, 8, 8) * 3
    for t in theirs.timesteps:
        eps = torch.randn_like(x)
        expected = theirs.step(eps, t, x).prev_sample
        assert torch.allclose(ours.step(eps, t, x), expected, atol=1e-5)
        x = expected
    assert theirs.init_noise_sigma == ours.init_noise_sigma


def test_pipelines_derive_the_vae_scale_factor_and_expose_components():
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline

    assert isinstance(inspect.getattr_static(DiffusionPipeline, "components"), property)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = inspect.getsource(diffusers.StableDiffusionPipeline.__init__)
    assert "self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)" in source
