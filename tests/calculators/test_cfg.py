"""cfg_cost: diffusers' rule (guidance when guidance_scale > 1), and the calls a real tiny denoiser receives."""

import math

import pytest
import torch

from infralens.calculators import cfg_cost
from infralens.diffusion import guided_prediction
from infralens.nets import TinyDenoiser


@pytest.mark.parametrize(
    ("w", "guided"),
    [(None, False), (-2.0, False), (0.0, False), (1.0, False), (1.0000001, True), (7.5, True), (3, True)],
)
def test_guidance_runs_only_above_one(w, guided):
    c = cfg_cost(steps=30, guidance_scale=w)
    assert c.guided is guided
    assert c.calls == (60 if guided else 30)
    assert c.multiplier == (2.0 if guided else 1.0)


@pytest.mark.parametrize("mode", ["batch", "two_pass"])
def test_samples_through_a_real_denoiser(mode):
    model = TinyDenoiser()
    samples = []
    model.register_forward_hook(lambda mod, args, out: samples.append(args[0].shape[0]))
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    cond, uncond = torch.randn(2, 1, 6, 16).unbind(0)
    with torch.no_grad():
        for _ in range(4):
            guided_prediction(model, x, t, cond, uncond, 5.0, mode=mode)
    assert sum(samples) == cfg_cost(steps=4, guidance_scale=5.0).calls


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        (dict(steps=0), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(steps=1, guidance_scale="high"), "guidance_scale"),
        (dict(steps=1, guidance_scale=True), "guidance_scale"),
        (dict(steps=1, guidance_scale=math.nan), "guidance_scale"),
        (dict(steps=1, guidance_scale=math.inf), "guidance_scale"),
    ],
)
def test_errors(kwargs, word):
    with pytest.raises(ValueError, match=word) as err:
        cfg_cost(**kwargs)
    assert "e.g." in str(err.value)


@pytest.mark.parametrize(("true_cfg", "calls"), [(None, 56), (1.0, 28), (0.0, 28), (4.0, 56)])
def test_distilled_guidance_reads_true_cfg_scale(true_cfg, calls):
    """FLUX and HunyuanVideo feed guidance_scale to the transformer; only true_cfg_scale > 1 doubles."""
    assert cfg_cost(steps=28, guidance_scale=3.5, true_cfg_scale=true_cfg).calls == calls


def test_pipeline_defaults():
    from infralens.calculators import DIFFUSERS_CFG_DEFAULTS, pipeline_cfg_cost

    calls = {name: pipeline_cfg_cost(name).calls for name in DIFFUSERS_CFG_DEFAULTS}
    assert calls == {
        "StableDiffusionPipeline": 100,
        "StableDiffusionXLPipeline": 100,
        "StableDiffusion3Pipeline": 56,
        "WanPipeline": 100,
        "FluxPipeline": 28,
        "HunyuanVideoPipeline": 50,
    }
    assert pipeline_cfg_cost("FluxPipeline", steps=4, true_cfg_scale=2.0).calls == 8
    with pytest.raises(ValueError, match=r"pipeline must be one of .*e\.g\. pipeline='FluxPipeline'; got 'Flux'"):
        pipeline_cfg_cost("Flux")
    with pytest.raises(ValueError, match="overrides must be steps"):
        pipeline_cfg_cost("FluxPipeline", scale=2.0)
    with pytest.raises(ValueError, match="true_cfg_scale must be a finite number"):
        cfg_cost(steps=2, true_cfg_scale=math.nan)
