"""DiffSynth-style flow-matching sigma templates against their formulas."""

import pytest
import torch

from infralens.diffusion import flow_sigmas


def shifted(values, s):
    return torch.tensor([s * v / (1 + (s - 1) * v) for v in values], dtype=torch.float64)


def test_wan_template():
    n, s = 10, 5.0
    grid = [1 - i / n for i in range(n)]  # 1, 0.9, ..., 0.1: the 0 end point is dropped
    assert torch.allclose(flow_sigmas("Wan", n).double(), shifted(grid, s), atol=1e-6)


def test_flux_template():
    n, s, lo = 5, 3.0, 0.003 / 1.002
    grid = [1 + (lo - 1) * i / (n - 1) for i in range(n)]
    assert torch.allclose(flow_sigmas("FLUX.1", n).double(), shifted(grid, s), atol=1e-6)


def test_shift_and_strength():
    assert torch.allclose(flow_sigmas("Wan", 4, shift=1.0), torch.tensor([1.0, 0.75, 0.5, 0.25]))
    half = flow_sigmas("Wan", 4, shift=1.0, denoising_strength=0.5)
    assert torch.allclose(half, torch.tensor([0.5, 0.375, 0.25, 0.125]))
    assert flow_sigmas("FLUX.1", 1).shape == (1,)


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        (("SD3", 10), {}, ["template", "'Wan'", "'SD3'"]),
        (("Wan", 0), {}, ["num_inference_steps", ">= 1", "num_inference_steps=50"]),
        (("Wan", 10), {"denoising_strength": 0.0}, ["denoising_strength", "(0, 1]", "denoising_strength=1.0"]),
        (("Wan", 10), {"denoising_strength": 1.5}, ["denoising_strength", "(0, 1]", "got 1.5"]),
        (("Wan", 10), {"shift": -1.0}, ["shift", "> 0"]),
    ],
)
def test_errors(args, kwargs, words):
    with pytest.raises(ValueError) as err:
        flow_sigmas(*args, **kwargs)
    assert all(w in str(err.value) for w in words)
