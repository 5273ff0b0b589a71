"""The diffuser Lab 10 starter runs, and what it prints agrees with numbers computed here."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffuser/lab-10-memory-optimization-reading/memory_optimization.py"
MiB, GiB = 2**20, 2**30
# parameter counts of WanTransformer3DModel(), the UMT5-XXL encoder and AutoencoderKLWan() on the meta device
DIT, TE, VAE, TE_EMBEDDING = 14_288_491_584, 5_680_910_336, 126_892_531, 256384 * 4096


@pytest.fixture(scope="module")
def out() -> str:
    proc = subprocess.run(
        [sys.executable, STARTER.name], cwd=STARTER.parent, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def row(out: str, name: str) -> tuple[float, float]:
    m = re.search(rf"^  {re.escape(name)}\s+([\d.]+)\s+([\d.e+-]+)$", out, re.M)
    assert m, name
    return float(m.group(1)), float(m.group(2))


def test_attention_rows(out):
    B, h, S, d = 1, 4, 1024, 32
    scores = B * h * S * S * 4
    assert f"scores (1, 4, 1024, 1024) = {scores / MiB:.1f} MiB" in out
    naive, diff = row(out, "attention, naive")
    assert naive == pytest.approx((2 * scores + B * h * S * d * 4) / MiB, abs=0.05) and diff == 0
    chunked, diff = row(out, "attention, 128-row chunks")
    block = B * h * 128 * S * 4
    expected = (B * h * S * d * 4 + 2 * block + B * h * 128 * d * 4) / MiB
    assert chunked == pytest.approx(expected, abs=0.05) and diff < 1e-5
    sdpa, diff = row(out, "F.scaled_dot_product_attention")
    assert sdpa < chunked and diff < 1e-5


def test_vae_rows(out):
    assert "receptive radius of the decoder: 2 latent cells" in out
    B, w, H, W, r, s = 2, 16, 32, 48, 2, 4

    def act(rows, cols):
        return B * w * rows * cols * 4

    full, diff = row(out, "VAE decode, whole batch")
    assert full == pytest.approx((act(2 * H, 2 * W) + 2 * act(s * H, s * W)) / MiB, abs=0.05) and diff == 0
    sliced, diff = row(out, "VAE slicing, one sample")
    assert sliced < full and diff < 1e-5
    tiled, diff = row(out, "VAE tiling, 8 + halo 2")
    p = 8 + 2 * r
    expected = B * 3 * s * H * s * W * 4 + act(2 * p, 2 * p) + 2 * act(s * p, s * p) + B * 3 * s * p * s * p * 4
    assert tiled == pytest.approx(expected / MiB, abs=0.05) and diff < 1e-5
    err = float(re.search(r"VAE tiling, blended \(no halo\)\s+([\d.e+-]+)$", out, re.M).group(1))
    assert err > 1e-3


def test_offload_rows(out):
    rows = dict(
        (m.group(1), tuple(map(float, m.groups()[1:])))
        for m in re.finditer(r"^  (resident|model|layer)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    )
    total = 2 * (DIT + TE + VAE)
    assert rows["resident"] == pytest.approx((total / GiB, total / GiB, 0), abs=0.05)
    assert rows["model"] == pytest.approx((2 * DIT / GiB, total / GiB, 0), abs=0.05)
    # sequential: the largest single layer is the text encoder's token embedding; the DiT streams 100 times
    moved = 2 * (2 * TE + 100 * DIT + VAE)  # prompt and negative prompt: the encoder streams twice
    assert rows["layer"] == pytest.approx((2 * TE_EMBEDDING / GiB, moved / GiB, 2 * DIT / GiB), abs=0.05)
