"""One reverse step: x0 and eps from each prediction type, the DDPM posterior, DDPM and DDIM steps, the errors,
and the Lab 02 starter. Expected values are computed here independently (plain float64 arithmetic or Gaussian
conditioning), never copied from a run."""

import math
import re

import pytest
import torch

from infralens.diffusion import (
    PREDICTION_TYPES,
    StepOutput,
    add_noise,
    ddim_step,
    ddpm_posterior,
    ddpm_step,
    predict_epsilon,
    predict_x0,
    v_target,
)


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64), torch.randn(
        3, 4, 5, 6, generator=g, dtype=torch.float64
    )


def outputs(x0, eps, ab):
    return {"epsilon": eps, "v_prediction": v_target(x0, eps, ab), "sample": x0}


@pytest.mark.parametrize("ab", [0.999, 0.5, 0.01, torch.tensor([0.9, 0.3, 0.02], dtype=torch.float64)])
def test_x0_and_eps_recovered_from_every_prediction_type(pair, ab):
    x0, eps = pair
    x_t = add_noise(x0, eps, ab)
    for kind, out in outputs(x0, eps, ab).items():
        assert torch.allclose(predict_x0(x_t, out, ab, kind), x0, atol=1e-9), kind
        assert torch.allclose(predict_epsilon(x_t, out, ab, kind), eps, atol=1e-9), kind


def test_sample_and_epsilon_outputs_are_returned_as_is(pair):
    x0, eps = pair
    x_t = add_noise(x0, eps, 0.4)
    assert predict_x0(x_t, x0, 0.4, "sample") is x0
    assert predict_epsilon(x_t, eps, 0.4, "epsilon") is eps


def test_v_prediction_works_at_zero_terminal_snr(pair):
    x0, eps = pair
    x_t = add_noise(x0, eps, 0.0)  # pure noise
    v = v_target(x0, eps, 0.0)  # = -x0
    assert torch.equal(predict_x0(x_t, v, 0.0, "v_prediction"), x0)
    assert torch.equal(predict_epsilon(x_t, v, 0.0, "v_prediction"), eps)


def posterior_by_conditioning(x_t, x0, ab, prev):
    """E and Var of x_prev given x_t and x0, by conditioning the joint Gaussian (no posterior formula)."""
    alpha = ab / prev
    cov = math.sqrt(alpha) * (1 - prev)  # Cov(x_prev, x_t | x0)
    mean = math.sqrt(prev) * x0 + cov / (1 - ab) * (x_t - math.sqrt(ab) * x0)
    var = (1 - prev) - cov**2 / (1 - ab)
    return mean, var


@pytest.mark.parametrize(("ab", "prev"), [(0.5, 0.6), (0.0778, 0.0949), (0.01, 0.9), (0.3, 0.3), (0.2, 1.0)])
def test_ddpm_posterior_matches_gaussian_conditioning(pair, ab, prev):
    x_t, x0 = pair
    mean, var = ddpm_posterior(x_t, x0, ab, prev)
    exp_mean, exp_var = posterior_by_conditioning(x_t, x0, ab, prev)
    assert torch.allclose(mean, exp_mean, atol=1e-12)
    assert var.shape == () and var.dtype == torch.float64
    assert var.item() == pytest.approx(exp_var, abs=1e-12)


def test_ddpm_posterior_per_sample(pair):
    x_t, x0 = pair
    ab, prev = [0.1, 0.5, 0.9], [0.2, 0.5, 1.0]
    mean, var = ddpm_posterior(x_t, x0, torch.tensor(ab), torch.tensor(prev))
    assert var.shape == (3, 1, 1, 1)
    for i in range(3):
        m, v = posterior_by_conditioning(x_t[i], x0[i], ab[i], prev[i])
        # float32 per-sample inputs are widened exactly, so only float32 rounding of ab itself remains
        assert torch.allclose(mean[i], m, atol=1e-6)
        assert var[i].item() == pytest.approx(v, abs=1e-6)
    # a scalar next to a per-sample value broadcasts
    _, var2 = ddpm_posterior(x_t, x0, torch.tensor(ab, dtype=torch.float64), 1.0)
    assert var2.flatten().tolist() == [0.0, 0.0, 0.0]


def test_ddpm_posterior_keeps_the_dtype_of_x_t():
    x = torch.randn(2, 3, dtype=torch.bfloat16)
    mean, var = ddpm_posterior(x, x, 0.5, 0.7)
    assert mean.dtype == torch.bfloat16 and var.dtype == torch.float32


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_ddpm_step_is_posterior_mean_plus_scaled_noise(pair, kind):
    x0, eps = pair
    ab, prev = 0.3, 0.45
    x_t = add_noise(x0, eps, ab)
    z = torch.randn_like(x0)
    out = ddpm_step(x_t, outputs(x0, eps, ab)[kind], ab, prev, prediction_type=kind, noise=z)
    assert isinstance(out, StepOutput)
    mean, var = posterior_by_conditioning(x_t, x0, ab, prev)
    assert torch.allclose(out.prev_sample, mean + math.sqrt(var) * z, atol=1e-9)
    assert torch.allclose(out.pred_original_sample, x0, atol=1e-9)


def test_ddpm_last_step_needs_no_noise_and_lands_on_x0_hat(pair):
    x0, eps = pair
    out = ddpm_step(add_noise(x0, eps, 0.9), eps, 0.9, 1.0)
    assert torch.equal(out.prev_sample, out.pred_original_sample)
    assert torch.allclose(out.prev_sample, x0, atol=1e-9)


def test_ddpm_step_clips_x0_hat_only_when_asked(pair):
    x0, eps = pair
    x0 = 3 * x0  # well outside [-1, 1]
    x_t = add_noise(x0, eps, 0.5)
    z = torch.zeros_like(x0)
    free = ddpm_step(x_t, eps, 0.5, 0.6, noise=z)
    clipped = ddpm_step(x_t, eps, 0.5, 0.6, noise=z, clip_sample=1.0)
    assert free.pred_original_sample.abs().max() > 1
    assert torch.equal(clipped.pred_original_sample, free.pred_original_sample.clamp(-1, 1))
    mean, _ = posterior_by_conditioning(x_t, free.pred_original_sample.clamp(-1, 1), 0.5, 0.6)
    assert torch.allclose(clipped.prev_sample, mean, atol=1e-9)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_ddim_with_a_perfect_output_lands_on_the_forward_process(pair, kind):
    x0, eps = pair
    ab, prev = torch.tensor([0.02, 0.3, 0.7], dtype=torch.float64), torch.tensor([0.05, 0.4, 1.0])
    x_t = add_noise(x0, eps, ab)
    out = ddim_step(x_t, outputs(x0, eps, ab)[kind], ab, prev, prediction_type=kind)
    assert torch.allclose(out.prev_sample, add_noise(x0, eps, prev), atol=1e-6)


@pytest.mark.parametrize("kind", PREDICTION_TYPES)
def test_ddim_eta_one_is_ddpm_and_eta_half_is_in_between(pair, kind):
    x_t, model_output = pair
    z = torch.randn_like(x_t)
    ddpm = ddpm_step(x_t, model_output, 0.2, 0.35, prediction_type=kind, noise=z).prev_sample
    ddim1 = ddim_step(x_t, model_output, 0.2, 0.35, prediction_type=kind, eta=1.0, noise=z).prev_sample
    assert torch.allclose(ddim1, ddpm, atol=1e-12)
    # eta = 0.5 by hand, from Song et al. eq. 12 and 16
    x0_hat = predict_x0(x_t, model_output, 0.2, kind)
    eps_hat = predict_epsilon(x_t, model_output, 0.2, kind)
    sigma = 0.5 * math.sqrt((1 - 0.35) / (1 - 0.2) * (1 - 0.2 / 0.35))
    expected = math.sqrt(0.35) * x0_hat + math.sqrt(1 - 0.35 - sigma**2) * eps_hat + sigma * z
    got = ddim_step(x_t, model_output, 0.2, 0.35, prediction_type=kind, eta=0.5, noise=z).prev_sample
    assert torch.allclose(got, expected, atol=1e-12)


def test_ddim_clips_x0_but_keeps_the_unclipped_eps(pair):
    x0, eps = pair
    x0 = 3 * x0
    x_t = add_noise(x0, eps, 0.5)
    out = ddim_step(x_t, eps, 0.5, 0.8, clip_sample=1.0)
    expected = math.sqrt(0.8) * x0.clamp(-1, 1) + math.sqrt(0.2) * eps
    assert torch.allclose(out.prev_sample, expected, atol=1e-9)


def test_mismatched_prediction_type_error_in_closed_form(pair):
    x0, eps = pair
    for ab in (0.99, 0.5, 1e-4):
        x_t, v = add_noise(x0, eps, ab), v_target(x0, eps, ab)
        err = predict_x0(x_t, v, ab, "epsilon") - x0
        closed = (1 - ab) / math.sqrt(ab) * x0 + math.sqrt(1 - ab) * (1 / math.sqrt(ab) - 1) * eps
        assert torch.allclose(err, closed, atol=1e-8)


def test_bfloat16_latents_keep_their_dtype():
    x = torch.randn(2, 4, 4, 4).bfloat16()
    for kind in PREDICTION_TYPES:
        assert ddim_step(x, x, 0.3, 0.5, prediction_type=kind).prev_sample.dtype == torch.bfloat16
        out = ddpm_step(x, x, 0.3, 0.5, prediction_type=kind, noise=torch.randn_like(x))
        assert out.prev_sample.dtype == torch.bfloat16


# --- every error message -----------------------------------------------------------------------------------


@pytest.fixture
def xs():
    return torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)


def test_error_prediction_type(xs):
    x, m = xs
    for fn in (predict_x0, predict_epsilon):
        with pytest.raises(
            ValueError,
            match=r"prediction_type must be one of 'epsilon', 'v_prediction', 'sample', "
            r"e\.g\. prediction_type='epsilon'; got 'v'",
        ):
            fn(x, m, 0.5, "v")
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        ddpm_step(x, m, 0.5, 0.6, prediction_type="eps", noise=m)
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        ddim_step(x, m, 0.5, 0.6, prediction_type="flow")


def test_error_shapes(xs):
    x, m = xs
    with pytest.raises(
        ValueError,
        match=r"model_output must have the shape of x_t: x_t is \(2, 4, 8, 8\) but "
        r"model_output is \(1, 4, 8, 8\)",
    ):
        predict_x0(x, m[:1], 0.5)
    with pytest.raises(ValueError, match="model_output must have the shape of x_t"):
        predict_epsilon(x, m[:1], 0.5, "v_prediction")
    with pytest.raises(ValueError, match="x0 must have the shape of x_t"):
        ddpm_posterior(x, m[:, :2], 0.5, 0.6)
    with pytest.raises(ValueError, match=r"noise must have the shape of x_t.*noise = torch.randn_like\(x_t\)"):
        ddpm_step(x, m, 0.5, 0.6, noise=m[:1])


def test_error_alpha_bar_t_one(xs):
    x, m = xs
    with pytest.raises(
        ValueError,
        match=r"alpha_bar_t must be < 1 for a reverse step .* e\.g\. alpha_bar_t=0\.5; "
        r"got 1\.0",
    ):
        ddpm_posterior(x, m, 1.0, 1.0)
    with pytest.raises(
        ValueError,
        match=r"alpha_bar_t must be < 1 to recover eps from an x0 prediction .* "
        r"e\.g\. alpha_bar_t=0\.5",
    ):
        predict_epsilon(x, m, 1.0, "sample")


def test_error_alpha_bar_prev_zero_and_order(xs):
    x, m = xs
    with pytest.raises(
        ValueError,
        match=r"alpha_bar_prev must be > 0 .* e\.g\. alpha_bar_prev=0\.6 or 1\.0 for the "
        r"last step; got 0\.0",
    ):
        ddim_step(x, m, 0.0, 0.0, prediction_type="v_prediction")
    with pytest.raises(
        ValueError,
        match=r"alpha_bar_prev must be >= alpha_bar_t \(the previous timestep is less "
        r"noisy\), e\.g\. alpha_bar_t=0\.5, alpha_bar_prev=0\.6; got alpha_bar_t=0\.6, "
        r"alpha_bar_prev=0\.5",
    ):
        ddpm_step(x, m, 0.6, 0.5, noise=m)
    with pytest.raises(ValueError, match=r"got alpha_bar_t=0\.5, alpha_bar_prev=0\.25"):
        ddpm_posterior(x, m, 0.5, torch.tensor([0.6, 0.25]))  # the second sample is out of order


def test_error_alpha_bar_range_and_batch(xs):
    x, m = xs
    with pytest.raises(
        ValueError,
        match=r"alpha_bar_prev must lie in \[0\.0, 1\.0\], e\.g\. alpha_bar_prev=0\.6; "
        r"got 1\.5",
    ):
        ddpm_posterior(x, m, 0.5, 1.5)
    with pytest.raises(ValueError, match="alpha_bar_t has 3 values but the batch has 2 samples"):
        ddim_step(x, m, torch.tensor([0.1, 0.2, 0.3]), 0.5)
    with pytest.raises(ValueError, match=r"alpha_bar_t must be > 0 to recover x0 from eps"):
        predict_x0(x, m, 0.0, "epsilon")


def test_error_alpha_bar_t_range(xs):
    """Above 1 is refused by the range check itself, for the steps and for an x0 ("sample") output alike."""
    x, m = xs
    msg = r"alpha_bar_t must lie in \[0\.0, 1\.0\], e\.g\. alpha_bar_t=0\.5; got 1\.5"
    with pytest.raises(ValueError, match=msg):
        ddpm_posterior(x, m, 1.5, 1.0)
    with pytest.raises(ValueError, match=msg):
        predict_x0(x, m, 1.5, "sample")
    with pytest.raises(ValueError, match=msg):
        predict_epsilon(x, m, 1.5, "epsilon")


def test_error_missing_noise(xs):
    x, m = xs
    msg = r"noise must be given when the step adds noise \(its variance is > 0\), e\.g\. noise=torch\.randn_like\(x_t\)"
    with pytest.raises(ValueError, match=msg):
        ddpm_step(x, m, 0.5, 0.6)
    with pytest.raises(ValueError, match=msg):
        ddim_step(x, m, 0.5, 0.6, eta=0.3)
    ddim_step(x, m, 0.5, 0.6)  # eta = 0 adds no noise: no noise needed
    ddpm_step(x, m, 0.5, 1.0)  # the last step neither


@pytest.mark.parametrize("bad", [0, -1.0, True, "1"])
def test_error_clip_sample(xs, bad):
    x, m = xs
    with pytest.raises(
        ValueError,
        match=r"clip_sample must be None \(no clipping\) or a number > 0, "
        r"e\.g\. clip_sample=1\.0; got",
    ):
        ddpm_step(x, m, 0.5, 1.0, clip_sample=bad)
    with pytest.raises(ValueError, match="clip_sample must be None"):
        ddim_step(x, m, 0.5, 0.6, clip_sample=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0", float("nan")])
def test_error_eta(xs, bad):
    x, m = xs
    with pytest.raises(
        ValueError,
        match=r"eta must be a number in \[0, 1\], e\.g\. eta=0\.0 \(DDIM\) or eta=1\.0 "
        r"\(DDPM\); got",
    ):
        ddim_step(x, m, 0.5, 0.6, eta=bad)


# --- the Lab 02 starter ------------------------------------------------------------------------------------


def linear_alpha_bar(t: int, T: int = 1000, start: float = 1e-4, end: float = 0.02) -> float:
    return math.prod(1 - (start + (end - start) * s / (T - 1)) for s in range(t + 1))


def test_lab_02_starter_output(starter):
    out = starter("diffuser/lab-02-denoising-step/denoising_step.py")
    for name in ("x_t (input)", "model output", "prev_sample"):
        assert re.search(rf"^\s+{re.escape(name)}\s+\(1, 4, 64, 64\)$", out, re.M), name
    ab500, ab480 = linear_alpha_bar(500), linear_alpha_bar(480)
    assert f"t=500 -> 480: alpha_bar {ab500:.4f} -> {ab480:.4f}" in out
    rows = re.findall(r"^\s+(epsilon|v_prediction|sample)\s+(\S+)\s+(\S+)\s+(\S+)$", out, re.M)
    assert [r[0] for r in rows] == list(PREDICTION_TYPES)
    for row in rows:
        assert all(float(v) < 1e-5 for v in row[1:]), row
    gap = float(re.search(r"DDPM and DDIM from the same output differ: RMS (\S+)", out).group(1))
    assert gap > 0.1
    table = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert [int(r[0]) for r in table] == [20, 250, 500, 750, 980]
    for t, ab, v_as_eps, eps_as_v in table:
        a = linear_alpha_bar(int(t))
        assert float(ab) == pytest.approx(a, abs=1e-5)
        # unit-variance x0 and eps, independent: RMS of c1 * x0 + c2 * eps is sqrt(c1^2 + c2^2)
        c1, c2 = (1 - a) / math.sqrt(a), math.sqrt(1 - a) * (1 / math.sqrt(a) - 1)
        assert float(v_as_eps) == pytest.approx(math.hypot(c1, c2), rel=0.03, abs=2e-3)
        d1, d2 = a - 1, math.sqrt(1 - a) * (math.sqrt(a) - 1)  # eps read as v
        assert float(eps_as_v) == pytest.approx(math.hypot(d1, d2), rel=0.03, abs=2e-3)
    at500 = float(re.search(r"at t=500: RMS error (\S+)", out).group(1))
    c1, c2 = (1 - ab500) / math.sqrt(ab500), math.sqrt(1 - ab500) * (1 / math.sqrt(ab500) - 1)
    assert at500 == pytest.approx(math.hypot(c1, c2), rel=0.03)
