"""Wan's image condition: the folded frame mask, y = [mask, z_image], errors, and the Lab 05 starter."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from infralens.diffusion import normalize_latents
from infralens.video import TinyCausalVideoVAE, first_frame_mask, image_condition

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("frames", "t"), [(1, 4), (9, 4), (13, 4), (17, 8)])
def test_mask_channels_are_frames(frames, t):
    m = first_frame_mask(frames, 2, 3, batch=2, temporal_factor=t)
    latent_frames = 1 + (frames - 1) // t
    assert m.shape == (2, t, latent_frames, 2, 3)
    for j in range(latent_frames):
        for k in range(t):
            frame = 0 if j == 0 else t * (j - 1) + 1 + k  # which video frame channel k of latent frame j stands for
            expected = 1.0 if frame == 0 else 0.0
            assert torch.all(m[:, k, j] == expected), (j, k)


def test_condition_is_mask_then_normalised_latent():
    vae = TinyCausalVideoVAE()
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 16, 24, generator=g) * 2 - 1
    y = image_condition(vae, image, 9)
    assert y.shape == (2, 4 + 16, 3, 2, 3)
    video = torch.zeros(2, 3, 9, 16, 24)
    video[:, :, 0] = image
    assert torch.equal(y[:, :4], first_frame_mask(9, 2, 3, batch=2))
    assert torch.allclose(y[:, 4:], normalize_latents(vae.encode(video), "wan2.1"), atol=1e-6)
    raw = image_condition(vae, image, 9, family=None)
    assert torch.allclose(raw[:, 4:], vae.encode(video), atol=1e-6)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: first_frame_mask(8, 2, 3), ["frames=8 is not 1 + 4k", "nearest valid: 5 or 9"]),
        (lambda: first_frame_mask(0, 2, 3), ["frames must be >= 1", "frames=81"]),
        (lambda: first_frame_mask(9, 0, 3), ["latent_height must be >= 1", "latent_height=60"]),
        (lambda: first_frame_mask(9, 2, 3, batch=1.0), ["batch must be a whole number >= 1", "batch=1"]),
        (lambda: first_frame_mask(9, 2, 3, temporal_factor=0), ["temporal_factor must be >= 1"]),
        (
            lambda: image_condition(TinyCausalVideoVAE(), torch.zeros(1, 3, 1, 16, 16), 9),
            ["image must be (B, 3, H, W)", "got (1, 3, 1, 16, 16)"],
        ),
        (lambda: image_condition(TinyCausalVideoVAE(), torch.zeros(1, 3, 16, 16), 6), ["frames=6 is not 1 + 4k"]),
    ],
)
def test_errors(call, words):
    with pytest.raises(ValueError) as err:
        call()
    assert all(w in str(err.value) for w in words), str(err.value)


def test_lab_05_starter_output():
    path = ROOT / "code/diffsynth/lab-05-conditioning-flow/conditioning_flow.py"
    proc = subprocess.run([sys.executable, path.name], cwd=path.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout

    def shape(label):
        m = re.search(rf"{re.escape(label)}\s+(\([\d, ]+\))", out)
        assert m, label
        return m.group(1)

    assert shape("prompt embeddings") == "(1, 7, 48)"
    assert shape("after text_embedding") == "(1, 7, 32)"  # projected to the model width D = 32
    assert shape("CLIP-like tokens") == "(1, 5, 24)"
    assert shape("context = [image, text]") == "(1, 12, 32)"  # 5 image + 7 text tokens
    assert shape("y = [mask, z_image]") == "(1, 20, 3, 4, 6)"  # 4 + 16 channels, F' = 1 + 8/4
    assert shape("latents + y") == "(1, 36, 3, 4, 6)"
    assert shape("video tokens") == "(1, 18, 32)"  # 3 * (4/2) * (6/2)
    assert shape("modulation, 6 x D") == "(1, 192)"
    assert shape("prediction") == "(1, 16, 3, 4, 6)"
    assert "After 4 guided steps (8 DiT calls): (1, 16, 3, 4, 6)" in out
    n = 21 * 30 * 52  # Wan 2.1, 480x832, 81 frames: 21 latent frames, 60/2 x 104/2 patches
    assert f"N = {n:,} video tokens, L = 512" in out
    assert f"N x N = {n * n:>13,}" in out and f"N x L = {n * 512:>13,} ({n / 512:.0f}x less)" in out
