"""The transformer track's starters, labs 06 to 10: the numbers they print, recomputed here by hand.

``tests/test_starters.py`` runs every starter; these tests read the traces and
check the values against formulas written out here, torch's own modules, or
properties that hold whatever the formula (a falling loss, equal logits).
"""

import ast
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "code" / "transformer"


@pytest.fixture
def run(starter):
    """``run(relative)``: what the starter printed (run once per session by conftest's ``starter``)."""
    return lambda relative: starter(LABS / relative)


def number(pattern: str, out: str) -> float:
    return float(re.search(pattern, out, re.M).group(1).replace(",", ""))


@pytest.fixture
def lab06(run):
    return run("lab-06-ffn-swiglu-parameter-count/ffn_swiglu_params.py")


def test_lab06_width_rule(lab06):
    for d, m in ((64, 16), (4096, 256), (5120, 256)):
        f = m * math.ceil(math.floor(8 * d / 3) / m)
        assert re.search(rf"D = +{d}: .* -> F = +{f} ", lab06)
    assert "F =  11008" in lab06


def test_lab06_counts(lab06):
    d, f = 64, 176
    assert number(r"3 \* D \* F = ([\d,]+)", lab06) == 3 * d * f
    V, D, F, L = 32000, 4096, 11008, 32
    total = 2 * V * D + L * (4 * D * D + 3 * D * F + 2 * D) + D
    assert number(r"meta device: ([\d,]+)", lab06) == total == 6_738_415_616
    assert number(r"^  ffn +([\d,]+)", lab06) == L * 3 * D * F
    share = 3 * D * F / (4 * D * D + 3 * D * F + 2 * D)
    assert number(r"FFN share of a layer: ([\d.]+)%", lab06) == pytest.approx(100 * share, abs=0.05)


def test_lab06_gqa_config(lab06):
    V, D, F, L, kv = 128256, 4096, 14336, 32, 8
    total = 2 * V * D + L * (2 * D * D + 2 * D * kv * 128 + 3 * D * F + 2 * D) + D
    assert number(r"total ([\d,]+) \(", lab06) == total == 8_030_261_248


@pytest.fixture
def lab07(run):
    return run("lab-07-training-loop-cross-entropy/training_loop.py")


def test_lab07_labels_are_shifted_inputs(lab07):
    ids = ast.literal_eval(re.search(r"input ids  (\[.*\])", lab07).group(1))
    targets = ast.literal_eval(re.search(r"targets    (\[.*\])", lab07).group(1))
    assert targets == [*ids[1:], -100]


def test_lab07_loss_starts_at_ln_v_and_falls(lab07):
    V = int(number(r"V = (\d+)", lab07))
    first = number(r"Initial loss ([\d.]+)", lab07)
    assert number(r"ln V = ([\d.]+)", lab07) == pytest.approx(math.log(V), abs=1e-3)
    assert abs(first - math.log(V)) < 0.1  # N(0, 0.02) weights: nearly uniform predictions
    last = float(re.findall(r"step +\d+  loss ([\d.]+)", lab07)[-1])
    assert last < first - 2.5
    before, after = (float(v) for v in re.search(r"Held-out loss: ([\d.]+) before, ([\d.]+) after", lab07).groups())
    assert after < before - 2.0  # it learned the text, not only the training windows


def test_lab07_accumulation(lab07):
    assert "counted tokens per micro-batch: [21, 63]" in lab07  # 3 x (8 - 1) and 64 - 1
    assert number(r"normalize='tokens' +\|.*= (\S+)", lab07) < 1e-5
    assert number(r"normalize='micro_batch' +\|.*= (\S+)", lab07) > 0.1
    assert number(r"would add (\d+) targets", lab07) == 3 * (64 - 8)


@pytest.fixture
def lab08(run):
    return run("lab-08-kv-cache-step-by-step/kv_cache.py")


def test_lab08_cache_grows_one_position_per_step(lab08):
    assert "(B, H_kv, S, Dh) = (2, 2, 18, 16)" in lab08  # 12 prompt + 6 decoded; 64 / 4 channels per head
    rows = re.findall(r"^ +(\d) +(\d+) +([\d,]+) +(\S+)$", lab08, re.M)
    assert [int(r[1]) for r in rows] == list(range(13, 19))
    per_token = 2 * 2 * 2 * 2 * 16 * 4  # keys and values, L, B, H_kv, Dh, fp32
    assert all(int(r[2].replace(",", "")) == per_token * int(r[1]) for r in rows)
    assert all(float(r[3]) < 1e-5 for r in rows)  # cached logits = full recompute
    assert number(r"bytes per token: ([\d,]+)", lab08) == per_token


def test_lab08_7b_cache_and_decode_intensity(lab08):
    GiB = 2**30
    for kv in (32, 8, 1):
        assert number(rf"^ +{kv} KV heads: ([\d.]+) GiB", lab08) == pytest.approx(2 * 32 * kv * 128 * 4096 * 2 / GiB)
    P = 6_738_415_616 - 2 * 32000 * 4096 + 32000 * 4096 - (2 * 32 + 1) * 4096  # all matrices, the head included
    rows = re.findall(r"^ +(\d+) +(\d+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$", lab08, re.M)
    assert len(rows) == 6
    for kv, b, gflops, w, c, intensity in rows:
        kv, b = int(kv), int(b)
        flops = 2 * b * P + 4 * b * 32 * 32 * 128 * 4096
        nbytes = 2 * P + b * 2 * 32 * kv * 128 * 4096 * 2
        assert float(gflops) == pytest.approx(flops / 1e9, abs=0.06)
        assert float(w) == pytest.approx(2 * P / GiB, abs=0.006)
        assert float(c) == pytest.approx(b * 2 * 32 * kv * 128 * 4096 * 2 / GiB, abs=0.006)
        assert float(intensity) == pytest.approx(flops / nbytes, abs=0.006)
    mha_1 = next(r for r in rows if r[0] == "32" and r[1] == "1")
    assert float(mha_1[5]) == 1.0  # 16-bit MHA at batch 1: one FLOP per byte read


@pytest.fixture
def lab09(run):
    return run("lab-09-attention-backend-comparison/attention_backends.py")


def test_lab09_kernels(lab09):
    flash = "FLASH_ATTENTION  _scaled_dot_product_flash_attention_for_cpu"
    for call in ("fp32, is_causal", "bf16, is_causal", "fp32, boolean mask", "fp32, head_dim 256"):
        assert re.search(rf"^  {re.escape(call)} +{flash}$", lab09, re.M), call
    assert re.search(r"^  fp32, dropout 0.1 +MATH +math: bmm, _safe_softmax, bernoulli_, bmm$", lab09, re.M)
    assert "FLASH_ATTENTION: Both fused kernels do not support non-zero dropout." in lab09


def test_lab09_tiled_attention_is_exact_and_small(lab09):
    gaps = [float(g) for g in re.findall(r"max \|out - SDPA\| = (\S+)", lab09)]
    assert len(gaps) == 2 and max(gaps) < 1e-5
    scores = 1 * 8 * 1024 * 1024 * 4 / 2**20  # MiB of fp32 scores
    assert number(r"scores of all heads: (\d+) MiB", lab09) == scores
    naive = number(r"naive \(S x S scores\) +([\d.]+) MiB", lab09)
    tiled = number(r"tiled 128 x 128 +([\d.]+) MiB", lab09)
    assert naive >= 2 * scores  # the scores and their softmax are alive together
    tile = 8 * 128 * 128 * 4 / 2**20
    assert tiled < naive / 10 and tiled >= tile


def test_lab09_cache_waste(lab09):
    lengths = [310, 1900, 45, 4096, 700, 1200, 88, 2500]
    per_token = 2 * 32 * 8 * 128 * 2
    paged = sum(16 * math.ceil(n / 16) for n in lengths)
    assert number(r"tokens held: ([\d,]+)", lab09) == sum(lengths)
    assert number(r"fixed: +([\d,]+) slots", lab09) == 8 * 4096
    assert number(r"paged: +([\d,]+) slots", lab09) == paged
    assert number(r"paged: .* = +([\d.]+) GiB", lab09) == pytest.approx(paged * per_token / 2**30, abs=0.006)
    assert number(r"paged: .* ([\d.]+)% unused", lab09) == pytest.approx(100 * (1 - sum(lengths) / paged), abs=0.06)
    assert "block tables: {0: [0, 1, 2], 1: [3], 2: [4, 5, 6, 7]}" in lab09  # ceil(37/16), ceil(5/16), ceil(60/16)


@pytest.fixture
def lab10(run):
    return run("lab-10-quantization-reading/quantization_plan.py")


def test_lab10_weight_bytes_and_errors(lab10):
    out, inp = 512, 2048
    rows = {
        m[0]: m[1:] for m in re.findall(r"^  (int\d, [\w ]+?) +([\d,]+) +([\d.]+)x +([\d.]+) +([\d.]+)$", lab10, re.M)
    }
    expected = {
        "int8, per row": out * inp + out * 2,  # codes + a 16-bit scale per row
        "int4, per row": out * inp // 2 + out * 2,  # two codes per byte
        "int4, group 128": out * inp // 2 + out * inp // 128 * 2,
    }
    for name, nbytes in expected.items():
        assert int(rows[name][0].replace(",", "")) == nbytes
        assert float(rows[name][1]) == pytest.approx(out * inp * 2 / nbytes, abs=0.006)
    err = {name: float(r[2]) for name, r in rows.items()}
    assert err["int8, per row"] < 0.02 < err["int4, group 128"] < err["int4, per row"] < 0.2
    # uniform rounding of a Gaussian with steps of max|w| / q_max: about step / sqrt(12) relative to sigma
    assert err["int8, per row"] == pytest.approx(3.6 / 127 / math.sqrt(12), rel=0.35)


def test_lab10_activation_outlier(lab10):
    acts = {
        (m[0], m[1]): float(m[2])
        for m in re.findall(r"^  (no outlier|outlier x60) +scale per (\w+) +([\d.]+)$", lab10, re.M)
    }
    assert acts["no outlier", "tensor"] < 0.02 and acts["no outlier", "row"] < 0.02
    assert acts["outlier x60", "tensor"] > 0.3  # steps as large as the ordinary values
    assert acts["outlier x60", "row"] > 10 * acts["no outlier", "row"]
    per_tensor = number(r"per-tensor X, per-row W +([\d.]+)", lab10)
    smoothed = number(r"smoothed X and W +([\d.]+)", lab10)
    assert smoothed < per_tensor / 4


def test_lab10_kv_cache_and_decode(lab10):
    n = 8 * 256 * 128
    assert number(r"bytes: bf16 ([\d,]+)", lab10) == 2 * n * 2
    assert number(r"int8 ([\d,]+) \(", lab10) == 2 * (n + 8 * 256 * 2)  # codes + a scale per (token, head)
    assert number(r"attention output error: ([\d.]+)", lab10) < 0.02
    GiB = 2**30
    P = 6_738_415_616 - 32000 * 4096 - 65 * 4096
    kv = 2 * 32 * 4096 * 32 * 128
    expected = {
        "bf16 weights, bf16 cache": 2 * P + 2 * kv,
        "int8 weights, bf16 cache": P + 2 * kv,
        "int4 weights, bf16 cache": P * (0.5 + 2 / 128) + 2 * kv,
        "int4 weights, int8 cache": P * (0.5 + 2 / 128) + kv,
    }
    for plan, nbytes in expected.items():
        gib, gflops, saved = re.search(rf"{plan} +([\d.]+) +([\d.]+) +([\d.]+)x", lab10).groups()
        assert float(gib) == pytest.approx(nbytes / GiB, abs=0.006)
        assert float(gflops) == pytest.approx((2 * P + 4 * 32 * 32 * 128 * 4096) / 1e9, abs=0.06)  # unchanged
        assert float(saved) == pytest.approx(expected["bf16 weights, bf16 cache"] / nbytes, abs=0.006)
