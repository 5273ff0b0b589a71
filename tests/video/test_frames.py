"""Folding the frame axis into the batch and back, and the Lab 06 starter."""

import re

import pytest
import torch

from infralens.video import batch_to_frames, frames_to_batch


def test_fold_against_explicit_indexing():
    z = torch.arange(2 * 3 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 3, 4, 2, 2)  # (B, C, F, H, W)
    x = frames_to_batch(z)
    assert x.shape == (8, 3, 2, 2)
    for b in range(2):
        for f in range(4):
            assert torch.equal(x[b * 4 + f], z[b, :, f])
    assert torch.equal(batch_to_frames(x, batch=2), z)


def test_errors():
    with pytest.raises(ValueError, match=r"latents must have 5 axes \(B, C, F, H, W\)"):
        frames_to_batch(torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"x must have 4 axes"):
        batch_to_frames(torch.zeros(2, 3, 4, 5, 6), batch=1)
    with pytest.raises(ValueError, match=r"batch must .* divides the leading axis 6 .* got 4"):
        batch_to_frames(torch.zeros(6, 3, 4, 5), batch=4)


def test_lab_06_starter_output(starter):
    text = starter("diffsynth/lab-06-video-latent-frame-dimension/video_latents.py")
    assert "per-frame view    (21, 16, 60, 104)" in text
    assert "row 5 is frame 5: with permute True, without False" in text
    assert "round trip exact: True" in text
    assert f"21 x 30 x 52 = {21 * 30 * 52:,}" in text
    assert "generation (100 calls)" in text
    rows = re.findall(r"^\s+(\d+)x(\d+) (\d+)f\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)%\s+(\d+)$", text, re.M)
    assert len(rows) == 3
    d, ffn, L, layers = 5120, 13824, 512, 40  # Wan 2.1 14B, text padded to 512
    for h, w, f, tokens, call, share, gen in rows:
        n = (1 + (int(f) - 1) // 4) * (int(h) // 16) * (int(w) // 16)  # F' x H'/2 x W'/2
        assert int(tokens.replace(",", "")) == n
        attention = layers * (4 * n * n * d + 4 * n * L * d)  # QK^T and PV, video and text keys
        block = 12 * n * d * d + 4 * L * d * d + 4 * n * d * ffn  # projections and MLP
        total = attention + layers * block  # embeddings and head are < 0.01 % of a call
        assert float(call) == pytest.approx(total / 1e15, abs=0.006)
        assert float(share) == pytest.approx(100 * attention / total, abs=0.06)
        assert abs(int(gen) - 100 * total / 1e15) < 0.6  # 50 steps x 2 calls
