"""Guided predictions computed both ways, their cost, the tiny denoiser, and the Lab 04 starter."""

import re

import pytest
import torch

from infralens.diffusion import cfg_combine, guided_prediction, step_cost
from infralens.nets import TinyDenoiser


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(1)
    model = TinyDenoiser(latent_channels=4, text_dim=8, width=16)
    x = torch.randn(3, 4, 6, 6, generator=g)
    t = torch.tensor([10, 500, 990])
    return model, x, t, torch.randn(3, 5, 8, generator=g), torch.randn(3, 5, 8, generator=g)


def test_batch_and_two_pass_agree_with_the_formula(setup):
    model, x, t, cond, uncond = setup
    with torch.no_grad():
        c, u = model(x, t, cond), model(x, t, uncond)
        for mode in ("batch", "two_pass"):
            got = guided_prediction(model, x, t, cond, uncond, 4.0, mode=mode)
            assert torch.allclose(got, u + 4.0 * (c - u), atol=1e-5)
        # the batch order is [uncond, cond]: swapping them would flip the guidance direction
        assert not torch.allclose(cfg_combine(c, u, 4.0), cfg_combine(u, c, 4.0), atol=1e-3)


def test_step_cost_counts_calls_batch_flops_and_activations(setup):
    model, x, t, cond, uncond = setup
    plain = step_cost(lambda: model(x, t, cond), model)
    batch = step_cost(lambda: guided_prediction(model, x, t, cond, uncond, 4.0, mode="batch"), model)
    two = step_cost(lambda: guided_prediction(model, x, t, cond, uncond, 4.0, mode="two_pass"), model)
    assert (plain.calls, plain.batch) == (1, 3)
    assert (batch.calls, batch.batch) == (1, 6)
    assert (two.calls, two.batch) == (2, 3)
    assert batch.flops == two.flops == 2 * plain.flops
    assert batch.largest_activation_bytes == 2 * plain.largest_activation_bytes == 2 * two.largest_activation_bytes


def test_tiny_denoiser_is_deterministic_and_checks_shapes():
    a, b = TinyDenoiser(seed=3), TinyDenoiser(seed=3)
    x, t, text = torch.randn(1, 4, 4, 4), torch.tensor([1]), torch.randn(1, 2, 16)
    assert torch.equal(a(x, t, text), b(x, t, text))
    with pytest.raises(ValueError, match=r"latents must be \(B, 4, H, W\) and text \(B, L, 16\)"):
        a(torch.randn(1, 3, 4, 4), t, text)
    with pytest.raises(ValueError, match="latent_channels"):
        TinyDenoiser(latent_channels=0)


def test_errors(setup):
    model, x, t, cond, uncond = setup
    with pytest.raises(ValueError, match="mode must be 'batch' or 'two_pass'"):
        guided_prediction(model, x, t, cond, uncond, 4.0, mode="parallel")
    with pytest.raises(ValueError, match="uncond"):
        guided_prediction(model, x, t, cond, uncond[:, :2], 4.0)


def test_negative_prompt_changes_only_the_unconditional_branch(setup):
    model, x, t, cond, uncond = setup
    other = torch.randn_like(uncond)
    with torch.no_grad():
        a = guided_prediction(model, x, t, cond, uncond, 4.0)
        b = guided_prediction(model, x, t, cond, other, 4.0)
        c = model(x, t, cond)
        # at scale 1 the negative prompt has no effect at all: the result is the conditional prediction
        assert torch.allclose(guided_prediction(model, x, t, cond, uncond, 1.0), c, atol=1e-5)
        assert torch.allclose(guided_prediction(model, x, t, cond, other, 1.0), c, atol=1e-5)
    assert not torch.allclose(a, b, atol=1e-3)


def test_step_cost_of_a_step_that_never_calls_the_module(setup):
    model, x, *_ = setup
    cost = step_cost(lambda: x * 2, model)
    assert (cost.calls, cost.batch, cost.flops, cost.largest_activation_bytes) == (0, 0, 0, 0)


@pytest.mark.parametrize("bad", [True, "7.5", None])
def test_error_scale(setup, bad):
    model, x, t, cond, uncond = setup
    with pytest.raises(ValueError, match=r"scale must be a real number, e\.g\. scale=7\.5; got"):
        guided_prediction(model, x, t, cond, uncond, bad)
    with pytest.raises(ValueError, match=r"scale must be a real number"):
        cfg_combine(x, x, bad)


def test_error_cfg_combine_shapes(setup):
    _, x, *_ = setup
    with pytest.raises(ValueError, match=r"cond must have the shape of uncond: uncond is \(3, 4, 6, 6\) but cond is"):
        cfg_combine(x, x[:1], 7.5)


def test_lab_04_starter_output(starter):
    text = starter("diffuser/lab-04-cfg-code-reading/classifier_free_guidance.py")
    assert "batched input   (2, 4, 8, 8)" in text and "guided          (1, 4, 8, 8)" in text
    assert float(re.search(r"max \|difference\| = (\S+)", text).group(1)) < 1e-4
    assert "scale 1 gives the conditional prediction: True" in text
    plain = re.search(r"no guidance\s+1\s+1\s+([\d,]+)\s+([\d,]+) B", text)
    doubled = re.search(r"CFG, one batch\s+1\s+2\s+([\d,]+)\s+([\d,]+) B", text)
    f1, a1 = (int(v.replace(",", "")) for v in plain.groups())
    f2, a2 = (int(v.replace(",", "")) for v in doubled.groups())
    assert f2 == 2 * f1 and a2 == 2 * a1
    assert "multiplies the step's FLOPs by 2.0" in text


def test_step_cost_batch_is_the_latents_batch_with_a_shared_timestep():
    # diffusers pipelines may pass one timestep for the whole batch (shape (1,), broadcast inside the
    # denoiser): the batch of a call is the latents', not the timestep's
    class SharedTimestep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x, t):
            return self.lin(x) + t

    model = SharedTimestep()
    cost = step_cost(lambda: model(torch.randn(3, 4), torch.tensor([0.5])), model)
    assert (cost.calls, cost.batch) == (1, 3)
