"""Folding the frame axis into the batch and back, and the Lab 06 starter."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from infralens.video import batch_to_frames, frames_to_batch

ROOT = Path(__file__).resolve().parents[2]


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


def test_lab_06_starter_output():
    path = ROOT / "code/diffsynth/lab-06-video-latent-frame-dimension/video_latents.py"
    out = subprocess.run([sys.executable, path.name], cwd=path.parent, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "per-frame view    (21, 16, 60, 104)" in text
    assert "row 5 is frame 5: with permute True, without False" in text
    assert "round trip exact: True" in text
    assert f"21 x 30 x 52 = {21 * 30 * 52:,}" in text
    rows = re.findall(r"^\s+(\d+)x(\d+) (\d+)f\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)$", text, re.M)
    assert len(rows) == 3
    for h, w, f, tokens, gib, tflop in rows:
        n = (1 + (int(f) - 1) // 4) * (int(h) // 16) * (int(w) // 16)  # F' x H'/2 x W'/2
        assert int(tokens.replace(",", "")) == n
        assert float(gib) == pytest.approx(40 * n * n * 2 / 2**30, abs=0.06)
        assert float(tflop) == pytest.approx(4 * 40 * n * n * 128 / 1e12, abs=0.06)
