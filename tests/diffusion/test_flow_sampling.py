"""The flow-matching loop, the exact Gaussian velocity, dynamic shift, and the Lab 04 starter."""

import math
import re

import pytest
import torch

from infralens.diffusion import dynamic_shift, flow_sample, flow_sigmas, shift_sigmas
from infralens.nets import GaussianVelocity, TinyDenoiser, TinyVideoDiT


class Recorder(torch.nn.Module):
    """Counts calls and records (timesteps, text) of each."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, latents, timesteps, text, **kwargs):
        self.seen.append((timesteps.clone(), text, sorted(kwargs)))
        return self.inner(latents, timesteps, text, **kwargs)


def test_loop_against_hand_written_euler():
    g = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 6, 16, generator=g)
    model = TinyDenoiser()
    sigmas = flow_sigmas("FLUX.1", 6)
    ref = x.clone()
    s = [*sigmas.tolist(), 0.0]
    for i in range(6):
        with torch.no_grad():
            v = model(ref, torch.full((2,), 1000 * s[i]), text)
        ref = ref + (s[i + 1] - s[i]) * v
    assert torch.allclose(flow_sample(model, x, sigmas, text), ref, atol=1e-5)


def test_calls_timesteps_and_guidance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g)
    cond, neg = torch.randn(1, 6, 16, generator=g), torch.randn(1, 6, 16, generator=g)
    model = Recorder(TinyDenoiser())
    sigmas = flow_sigmas("Wan", 5)
    flow_sample(model, x, sigmas, cond, negative_text=neg, guidance_scale=1.0)
    assert len(model.seen) == 5  # scale 1: the negative prompt is never run
    assert torch.allclose(torch.stack([t[0] for t, _, _ in model.seen]), sigmas * 1000)
    model.seen.clear()
    guided = flow_sample(model, x, sigmas, cond, negative_text=neg, guidance_scale=4.0)
    assert len(model.seen) == 10
    assert [text is cond for _, text, _ in model.seen] == [True, False] * 5  # positive, then negative
    # one step by hand: v = v_neg + w (v_pos - v_neg)
    inner = TinyDenoiser()
    with torch.no_grad():
        ref = x.clone()
        s = [*sigmas.tolist(), 0.0]
        for i in range(5):
            t = torch.full((1,), 1000 * s[i])
            vp, vn = inner(ref, t, cond), inner(ref, t, neg)
            ref = ref + (s[i + 1] - s[i]) * (vn + 4.0 * (vp - vn))
    assert torch.allclose(guided, ref, atol=1e-4)


def test_shared_inputs_reach_every_call():
    dit = Recorder(TinyVideoDiT(condition_channels=20))
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 20, 2, 4, 4, generator=g)
    text = torch.randn(1, 3, 32, generator=g)
    out = flow_sample(
        dit, z, flow_sigmas("Wan", 2), text, negative_text=text * 0, guidance_scale=2.0, shared={"condition": y}
    )
    assert out.shape == z.shape
    assert [kw for _, _, kw in dit.seen] == [["condition"]] * 4


@pytest.mark.parametrize("template", ["Wan", "FLUX.1"])
@pytest.mark.parametrize("steps", [1, 3, 10])
@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_point_mass_lands_exactly_with_any_schedule(template, steps, shift):
    field = GaussianVelocity(mean=-1.5, std=0.0)
    x = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    out = flow_sample(field, x, flow_sigmas(template, steps, shift=shift).double())
    assert torch.allclose(out, torch.full_like(out, -1.5), atol=1e-9)


def test_gaussian_velocity_is_the_conditional_mean():
    """Least squares of (eps - x0) on x_sigma recovers the closed form's slope and intercept."""
    g = torch.Generator().manual_seed(3)
    m, d, sigma = 0.7, 0.4, 0.35
    x0 = m + d * torch.randn(400_000, generator=g, dtype=torch.float64)
    eps = torch.randn(400_000, generator=g, dtype=torch.float64)
    x = (1 - sigma) * x0 + sigma * eps
    A = torch.stack([x, torch.ones_like(x)], 1)
    slope, intercept = torch.linalg.lstsq(A, (eps - x0)[:, None]).solution.flatten().tolist()
    field = GaussianVelocity(mean=m, std=d)
    probe = torch.tensor([[0.0], [1.0]], dtype=torch.float64)  # v at x = 0 and x = 1
    v0, v1 = field(probe, torch.tensor([1000 * sigma] * 2)).flatten().tolist()
    assert v1 - v0 == pytest.approx(slope, abs=0.01)
    assert v0 == pytest.approx(intercept, abs=0.01)


def test_gaussian_velocity_is_the_derivative_of_the_exact_path():
    m, d = 0.3, 0.6
    eps = torch.randn(5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def path(s):  # the exact solution from x_1 = eps
        a = 1 - s
        return a * m + math.sqrt(a * a * d * d + s * s) * eps

    field = GaussianVelocity(mean=m, std=d)
    for s in (0.9, 0.5, 0.1):
        h = 1e-6
        fd = (path(s + h) - path(s - h)) / (2 * h)
        assert torch.allclose(field(path(s), torch.tensor([1000 * s])), fd, atol=1e-6)
    assert torch.allclose(field.exact_sample(eps), path(0.0), atol=1e-12)


def test_euler_is_first_order_on_curved_paths():
    field = GaussianVelocity(mean=0.5, std=0.5)
    noise = torch.randn(4096, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = field.exact_sample(noise)
    err = {
        n: (flow_sample(field, noise, flow_sigmas("Wan", n, shift=1.0).double()) - exact).abs().max() for n in (10, 50)
    }
    assert 4.0 < err[10] / err[50] < 6.0  # 5x the steps, about 5x smaller error
    one = flow_sample(field, noise, flow_sigmas("Wan", 1).double())
    assert torch.allclose(one, torch.full_like(one, 0.5), atol=1e-12)  # one step gives the data mean


def test_dynamic_shift_formula_and_exponential_time_shift():
    for L in (256, 1024, 4096, 8192):
        mu = 0.5 + (1.15 - 0.5) * (L - 256) / (4096 - 256)
        assert dynamic_shift(L) == pytest.approx(math.exp(mu), rel=1e-12)
    assert dynamic_shift(1000, base_seq_len=100, max_seq_len=1100, base_shift=0.0, max_shift=1.0) == pytest.approx(
        math.exp(0.9)
    )
    sigma = torch.linspace(1, 0.05, 20, dtype=torch.float64)
    mu = math.log(dynamic_shift(4096))
    exp_shift = math.exp(mu) / (math.exp(mu) + (1 / sigma - 1))
    assert torch.allclose(shift_sigmas(sigma, dynamic_shift(4096)), exp_shift, atol=1e-12)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda m: flow_sample(m, [1.0], flow_sigmas("Wan", 2)), ["latents must be a tensor", "got [1.0]"]),
        (lambda m: flow_sample(m, torch.zeros(1, 4, 8, 8), [1.0, 0.5]), ["sigmas must be a 1-D tensor", "flow_sigmas"]),
        (lambda m: flow_sample(m, torch.zeros(1, 4, 8, 8), torch.tensor([])), ["N >= 1"]),
        (lambda m: flow_sample(m, torch.zeros(1, 4, 8, 8), torch.ones(2, 2)), ["1-D tensor"]),
        (
            lambda m: flow_sample(m, torch.zeros(1, 4, 8, 8), torch.tensor([0.5, 0.8])),
            ["decrease strictly", "[0.5, 0.800000011920929]"],
        ),
        (lambda m: flow_sample(m, torch.zeros(1, 4, 8, 8), torch.tensor([1.5, 0.5])), ["lie in [0, 1]"]),
        (
            lambda m: flow_sample(m, torch.zeros(1, 4, 8, 8), flow_sigmas("Wan", 2), guidance_scale="5"),
            ["guidance_scale must be a real number", "guidance_scale=5.0", "'5'"],
        ),
        (
            lambda m: flow_sample(m, torch.zeros(1, 4, 8, 8), flow_sigmas("Wan", 2), guidance_scale=5.0),
            ["guidance_scale=5.0 needs negative_text", "torch.zeros_like(text)", "guidance_scale=1.0"],
        ),
    ],
)
def test_flow_sample_errors(call, words):
    with pytest.raises(ValueError) as err:
        call(GaussianVelocity())
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: GaussianVelocity(std=-0.1), ["std must be >= 0", "point mass", "got -0.1"]),
        (lambda: GaussianVelocity(mean="0"), ["mean must be a real number", "mean=0.5", "'0'"]),
        (lambda: GaussianVelocity()(torch.zeros(2, 3), torch.tensor([0.0])), ["sigma in (0, 1]", "got [0.0]"]),
        (lambda: GaussianVelocity()(torch.zeros(2, 3), torch.tensor([1.0, 2.0, 3.0])), ["one per sample"]),
        (lambda: dynamic_shift(0), ["image_seq_len must be >= 1", "image_seq_len=4096"]),
        (lambda: dynamic_shift(100, max_seq_len=256), ["max_seq_len must be > base_seq_len=256", "got 256"]),
        (lambda: dynamic_shift(100, max_shift=None), ["max_shift must be a real number", "log s", "None"]),
    ],
)
def test_other_errors(call, words):
    with pytest.raises(ValueError) as err:
        call()
    assert all(w in str(err.value) for w in words), str(err.value)


def test_lab_04_starter_output(starter):
    out = starter("diffsynth/lab-04-scheduler-loop-reading/scheduler_loop.py")
    rows = re.findall(r"^\s+(\d)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert [int(r[0]) for r in rows] == list(range(10))
    for i, grid, sigma, t in rows:
        u = 1 - int(i) / 10  # Wan grid: 11 points from 1 to 0, the last dropped
        expected = 5 * u / (1 + 4 * u)  # shift 5
        assert float(grid) == pytest.approx(u, abs=5e-4)
        assert float(sigma) == pytest.approx(expected, abs=5e-5)
        assert float(t) == pytest.approx(1000 * expected, abs=5e-3)
    assert float(re.search(r"Point-mass data: 10 calls, max \|x - 0.5\| = (\S+)", out).group(1)) < 1e-5
    errs = {int(n): float(e) for n, e in re.findall(r"^\s+(\d+) steps\s+max \|error\| = (\S+)$", out, re.M)}
    assert list(errs) == [1, 2, 5, 10, 50]
    assert all(errs[a] > errs[b] for a, b in zip(list(errs), list(errs)[1:], strict=False))
    cost = {
        (int(n), float(w)): (int(c), int(f.replace(",", "")))
        for n, w, c, f in re.findall(r"^\s+(\d+)\s+([\d.]+)\s+(\d+)\s+([\d,]+)$", out, re.M)
    }
    assert {k: v[0] for k, v in cost.items()} == {(10, 1.0): 10, (10, 5.0): 20, (20, 1.0): 20, (20, 5.0): 40}
    per_call = cost[(10, 1.0)][1] / 10
    assert all(f == c * per_call for c, f in cost.values())  # every call costs the same


def test_sigma_zero_is_a_valid_last_value_and_repeated_sigmas_are_refused():
    # [1, 0.5, 0]: the last step goes from 0 to 0 and changes nothing, so it samples like [1, 0.5];
    # [1, 0.5, 0.5] does not decrease strictly
    def field(latents, timesteps, text):  # a velocity that also accepts sigma = 0
        return latents * 0.5 + timesteps.view(-1, 1, 1, 1) / 1000

    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    ending = flow_sample(field, x, torch.tensor([1.0, 0.5, 0.0]))
    assert torch.equal(ending, flow_sample(field, x, torch.tensor([1.0, 0.5])))
    with pytest.raises(ValueError, match="sigmas must decrease strictly"):
        flow_sample(field, x, torch.tensor([1.0, 0.5, 0.5]))
