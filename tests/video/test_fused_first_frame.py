"""TI2V's fused first frame: per-token timesteps and re-injection, on a velocity field with a known answer."""

from __future__ import annotations

import pytest
import torch

from infralens.diffusion import flow_sample, flow_sigmas
from infralens.nets import GaussianVelocity
from infralens.video import first_frame_timesteps, fused_first_frame_sample


def test_token_counts_and_order():
    x = torch.zeros(1, 48, 31, 44, 80)  # Wan 2.2 TI2V at 704 x 1280, 121 frames
    t = first_frame_timesteps(500.0, x)
    per_frame = 44 * 80 // 4
    assert t.shape == (31 * per_frame,)
    assert (t[:per_frame] == 0).all() and (t[per_frame:] == 500).all()


def test_loop_lands_on_the_data_and_keeps_frame_zero():
    """With the exact velocity of a point mass the other frames land on it; frame 0 stays the image."""
    field = GaussianVelocity(mean=0.5, std=0.0)

    def denoiser(x, t, text):  # the field reads one sigma: the noisy tokens' (max over tokens)
        return field(x, t.max().reshape(1), text)

    noise = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    first = torch.full((1, 4, 1, 2, 2), -2.0)
    out = fused_first_frame_sample(denoiser, noise, first, flow_sigmas("Wan", 6))
    assert torch.equal(out[:, :, :1], first)
    assert torch.allclose(out[:, :, 1:], torch.full_like(out[:, :, 1:], 0.5), atol=1e-5)
    # without re-injection frame 0 is denoised like the rest and the image is lost
    plain = flow_sample(lambda x, t, c: field(x, t, c), torch.cat([first, noise[:, :, 1:]], 2), flow_sigmas("Wan", 6))
    assert not torch.allclose(plain[:, :, :1], first)


def test_bad_input():
    with pytest.raises(ValueError, match="latents must be a video latent"):
        first_frame_timesteps(1.0, torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="divisible by the patch"):
        first_frame_timesteps(1.0, torch.zeros(1, 4, 2, 3, 2))
    x = torch.zeros(1, 4, 3, 2, 2)
    with pytest.raises(ValueError, match="one latent frame"):
        fused_first_frame_sample(lambda x, t, c: x, x, x, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="sigmas must decrease"):
        fused_first_frame_sample(lambda x, t, c: x, x, x[:, :, :1], torch.tensor([0.5, 1.0]))


def test_timesteps_keep_the_latents_dtype():
    t = first_frame_timesteps(500.0, torch.zeros(1, 4, 3, 2, 2, dtype=torch.bfloat16))
    assert t.dtype == torch.bfloat16 and t.tolist() == [0.0] + [500.0] * 2


def test_the_loop_counts_tokens_with_the_familys_patch():
    # LTX-Video patches by (1, 1, 1): every latent cell is a token, four times Wan 2.2's (1, 2, 2)
    seen = []

    def denoiser(x, t, text):
        seen.append(t.numel())
        return torch.zeros_like(x)

    x, first = torch.zeros(1, 4, 3, 2, 2), torch.ones(1, 4, 1, 2, 2)
    fused_first_frame_sample(denoiser, x, first, torch.tensor([1.0, 0.5]), family="ltxvideo")
    fused_first_frame_sample(denoiser, x, first, torch.tensor([1.0]), family="wan2.2")
    assert seen == [3 * 2 * 2] * 2 + [3]


def test_a_grid_may_end_at_zero_and_the_image_must_match_the_latent():
    x, first = torch.zeros(1, 4, 3, 2, 2), torch.ones(1, 4, 1, 2, 2)

    def velocity(x, t, text):
        return torch.ones_like(x)

    ends_at_zero = fused_first_frame_sample(velocity, x, first, torch.tensor([1.0, 0.5, 0.0]))
    assert torch.equal(ends_at_zero, fused_first_frame_sample(velocity, x, first, torch.tensor([1.0, 0.5])))
    with pytest.raises(ValueError, match=r"first_frame_latents must be one latent frame \(1, 4, 1, 2, 2\)"):
        fused_first_frame_sample(velocity, x, torch.ones(1, 4, 1, 4, 2), torch.tensor([1.0]))
