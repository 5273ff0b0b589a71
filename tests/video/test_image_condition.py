"""Wan's image condition: the folded frame mask, y = [mask, z_image], errors, and the Lab 05 starter."""

import re

import pytest
import torch

from infralens.diffusion import normalize_latents
from infralens.nets import TinyCausalVideoVAE
from infralens.video import first_frame_mask, image_condition


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


def test_lab_05_starter_output(starter):
    out = starter("diffsynth/lab-05-conditioning-flow/conditioning_flow.py")

    def shape(label):
        m = re.search(rf"{re.escape(label)}\s+(\([\d, ]+\))", out)
        assert m, label
        return m.group(1)

    assert shape("prompt embeddings") == "(1, 7, 48)"
    assert shape("after text_embedding") == "(1, 7, 32)"  # projected to the model width D = 32
    assert shape("CLIP-like tokens") == "(1, 257, 24)"
    assert shape("after image_embedding") == "(1, 257, 32)"  # its own keys and values: not joined to the text
    assert shape("y = [mask, z_image]") == "(1, 20, 3, 4, 6)"  # 4 + 16 channels, F' = 1 + 8/4
    assert shape("latents + y") == "(1, 36, 3, 4, 6)"
    assert shape("video tokens") == "(1, 18, 32)"  # 3 * (4/2) * (6/2)
    assert shape("modulation, 6 x D") == "(1, 6, 32)"  # six vectors of D per sample
    assert shape("prediction") == "(1, 16, 3, 4, 6)"
    assert "After 4 guided steps (8 DiT calls): (1, 16, 3, 4, 6)" in out
    n, d, text, image = 21 * 30 * 52, 5120, 512, 257  # Wan 2.1 14B, 480x832, 81 frames; 60/2 x 104/2 patches
    assert f"N = {n:,} video tokens" in out
    # FLOPs by hand: 2 per multiply-add; projections of the queries/outputs on N tokens, keys/values on theirs
    self_attn = 4 * 2 * n * d * d + 2 * 2 * n * n * d
    cross_text = 2 * 2 * n * d * d + 2 * 2 * text * d * d + 2 * 2 * n * text * d
    image_branch = 2 * 2 * image * d * d + 2 * 2 * n * image * d
    tflop = {m[0].strip(): float(m[1]) for m in re.findall(r"^  (\S.*?)\s+([\d.]+) TFLOP", out, re.M)}
    assert tflop["self-attention"] == round(self_attn / 1e12, 2)
    assert tflop["cross, text only"] == round(cross_text / 1e12, 2)
    assert tflop["cross, text + image"] == round((cross_text + image_branch) / 1e12, 2)


@pytest.mark.parametrize(("frames", "t", "latent_frames"), [(5, 1, 5), (5, 2, 3), (9, 4, 3)])
def test_the_mask_has_one_latent_frame_per_group_of_t_frames(frames, t, latent_frames):
    m = first_frame_mask(frames, 2, 3, temporal_factor=t)
    assert tuple(m.shape) == (1, t, latent_frames, 2, 3)
    assert m[0, :, 0].min() == 1 and (latent_frames == 1 or m[0, :, 1:].max() == 0)


class TwoFrameVAE(torch.nn.Module):
    """A stand-in VAE that folds two frames into one latent frame (Wan's fold four): zeros of the right shape."""

    spatial_factor, temporal_factor, channels = 2, 2, 3

    def encode(self, video):
        B, _, F, H, W = video.shape
        return torch.zeros(B, self.channels, (F - 1) // 2 + 1, H // 2, W // 2)


def test_the_condition_follows_the_vaes_temporal_factor():
    y = image_condition(TwoFrameVAE(), torch.zeros(1, 3, 4, 6), 5, family=None)
    assert tuple(y.shape) == (1, 2 + 3, 3, 2, 3)  # t_f = 2 mask channels, then the 3 latent channels
    assert torch.equal(y[:, :2], first_frame_mask(5, 2, 3, temporal_factor=2))
