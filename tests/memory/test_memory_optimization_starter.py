"""The diffuser Lab 10 starter runs, and what it prints agrees with numbers computed here."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffuser/lab-10-memory-optimization-reading/memory_optimization.py"
MiB, GiB = 2**20, 2**30
# parameter counts of WanTransformer3DModel(), the UMT5-XXL encoder and AutoencoderKLWan() on the meta device
DIT, TE, VAE, TE_EMBEDDING = 14_288_491_584, 5_680_910_336, 126_892_531, 256384 * 4096


@pytest.fixture(scope="module")
def out(starter) -> str:
    return starter(STARTER)


def row(out: str, name: str) -> tuple[float, float]:
    m = re.search(rf"^  {re.escape(name)}\s+([\d.]+)\s+([\d.e+-]+)$", out, re.M)
    assert m, name
    return float(m.group(1)), float(m.group(2))


def test_attention_rows(out):
    B, h, S, d = 2, 4, 1024, 32
    matrix = S * S * 4  # one head's (S, S) float32 scores
    assert f"scores (2, 4, 1024, 1024) = {B * h * matrix / MiB:.1f} MiB" in out
    assert "diffusers' 'auto' slice: 2 of the 8 (batch x head) rows" in out
    out_bytes = B * h * S * d * 4
    naive, diff = row(out, "attention, naive")
    assert naive == pytest.approx((2 * B * h * matrix + out_bytes) / MiB, abs=0.05) and diff == 0
    sliced, diff = row(out, "attention, sliced by 2 rows")
    # the output, two (S, S) matrices for each of the 2 rows of a slice, and the slice's own output
    assert sliced == pytest.approx((out_bytes + 2 * 2 * matrix + 2 * S * d * 4) / MiB, abs=0.06) and diff < 1e-5
    sdpa, diff = row(out, "F.scaled_dot_product_attention")
    # its output and one log-sum-exp per query row; no score tensor (its scratch is not a returned tensor)
    assert sdpa == pytest.approx((out_bytes + B * h * S * 4) / MiB, abs=0.05) and diff < 1e-5


def test_wan_rows(out):
    n, f = 21 * 30 * 52, 13824
    assert re.search(rf"DiT weights\s+{2 * DIT / GiB:.1f} GiB", out)
    assert re.search(rf"one block's FFN hidden state\s+{n * f * 2 / GiB:.2f} GiB", out)
    assert re.search(rf"naive scores \+ softmax, a layer\s+{2 * 40 * n * n * 2 / GiB:.1f} GiB", out)
    assert re.search(r"one DiT call\s+1\.678 PFLOP, 53% attention", out)


def test_vae_rows(out):
    assert "receptive radius of the decoder: 2 latent cells" in out
    B, w, H, W, r, s = 2, 16, 32, 48, 2, 4

    def act(rows, cols):
        return B * w * rows * cols * 4

    full, diff = row(out, "VAE decode, whole batch")
    assert full == pytest.approx((act(2 * H, 2 * W) + 2 * act(s * H, s * W)) / MiB, abs=0.05) and diff == 0
    per_sample, diff = row(out, "VAE slicing, one sample")
    assert per_sample < full and diff < 1e-5
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
