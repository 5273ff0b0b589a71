"""VACE: the mask in latent layout, the 2C + s^2 context, hints added after chosen blocks times one scale."""

import pytest
import torch
from torch.nn.functional import pixel_unshuffle

from infralens.adapters import inject_vace_hints, vace_context, vace_mask_latents


def test_mask_latents_are_pixel_unshuffle_then_nearest_exact_in_time():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(9, 16, 24, generator=g) > 0.5).float()  # (F, H, W)
    lat = vace_mask_latents(mask)
    assert lat.shape == (1, 64, 3, 2, 3)
    unshuffled = pixel_unshuffle(mask.unsqueeze(1), 8)  # (F, 64, H/8, W/8): torch's own channel order
    # nearest-exact from 9 frames to 3 picks frames floor((j + 0.5) * 3) = 1, 4, 7
    assert torch.equal(lat[0].permute(1, 0, 2, 3), unshuffled[[1, 4, 7]])


def test_mask_latents_first_frame_alone_then_groups():
    mask = torch.zeros(5, 8, 8)
    assert vace_mask_latents(mask).shape[2] == 2  # 1 + 4k frames -> 1 + k
    assert vace_mask_latents(torch.zeros(1, 8, 8)).shape[2] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask": torch.zeros(5, 12, 16)}, "mask must be"),
        ({"mask": torch.zeros(16, 16)}, "mask must be"),
        ({"mask": torch.zeros(5, 16, 16), "spatial_factor": 0}, "spatial_factor"),
        ({"mask": torch.zeros(5, 16, 16), "temporal_factor": 0}, "temporal_factor"),
    ],
)
def test_mask_latents_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vace_mask_latents(**kwargs)


def test_context_is_inactive_reactive_mask_on_channels():
    a, b = torch.zeros(1, 16, 2, 2, 3), torch.ones(1, 16, 2, 2, 3)
    m = vace_mask_latents(torch.ones(5, 16, 24))
    c = vace_context(a, b, m)
    assert c.shape == (1, 96, 2, 2, 3)
    assert c[:, :16].sum() == 0 and c[:, 16:32].eq(1).all() and c[:, 32:].eq(1).all()


def test_context_errors():
    z = torch.zeros(1, 16, 2, 2, 3)
    with pytest.raises(ValueError, match="same shape"):
        vace_context(z, torch.zeros(1, 8, 2, 2, 3), torch.zeros(1, 64, 2, 2, 3))
    with pytest.raises(ValueError, match="frames and size"):
        vace_context(z, z, torch.zeros(1, 64, 3, 2, 3))


def test_hints_enter_after_the_listed_blocks_linearly_in_scale():
    blocks = [lambda h: 2 * h] * 4
    x, hints = torch.ones(1, 1, 1), [torch.ones(1, 1, 1), 10 * torch.ones(1, 1, 1)]
    assert inject_vace_hints(blocks, x, hints, vace_layers=(0, 2)).item() == 44.0  # ((2 + 1) * 4 + 10) * 2
    assert inject_vace_hints(blocks, x, hints, vace_layers=(1, 3)).item() == 2 * 2 * 2 * 2 + 2 * 2 + 10
    plain = inject_vace_hints(blocks, x, [], vace_layers=())
    assert inject_vace_hints(blocks, x, hints, vace_layers=(0, 2), vace_scale=0.0).item() == plain.item() == 16.0
    half = inject_vace_hints(blocks, x, hints, vace_layers=(0, 2), vace_scale=0.5).item()
    assert half - plain.item() == pytest.approx((44.0 - 16.0) / 2)


@pytest.mark.parametrize(
    ("hints", "layers", "scale", "match"),
    [
        ([torch.ones(1)], (0, 2), 1.0, "one tensor per entry"),
        ([torch.ones(1)] * 2, (2, 0), 1.0, "increasing"),
        ([torch.ones(1)] * 2, (0, 4), 1.0, "increasing"),
        ([torch.ones(1)] * 2, (0, 2), "1", "vace_scale"),
        ([torch.ones(1)] * 2, (0, 2), True, "vace_scale"),
    ],
)
def test_inject_errors(hints, layers, scale, match):
    with pytest.raises(ValueError, match=match):
        inject_vace_hints([lambda h: h] * 4, torch.ones(1), hints, vace_layers=layers, vace_scale=scale)
