"""The transformer track's starters (labs 01-05): what they print, recomputed here independently.

``tests/test_starters.py`` runs every starter; these tests read the numbers in
the traces of labs 01 to 05 and check them against values computed here from
first principles (a fresh tokenizer, formulas by hand, torch's own modules).
"""

import ast
import math
import re
from pathlib import Path

import pytest

from infralens.transformer import book_tokenizer

ROOT = Path(__file__).resolve().parents[2]
LABS = ROOT / "code" / "transformer"


def number(pattern: str, out: str) -> int:
    return int(re.search(pattern, out, re.M).group(1).replace(",", ""))


@pytest.fixture(scope="module")
def lab01(starter):
    return starter(LABS / "lab-01-tokenization-embedding/tokenizer_embedding.py")


def test_lab01_ids_and_padding(lab01):
    tok = book_tokenizer(2000)
    texts = ["The denoiser predicts the noise.", "Tokens are not words"]
    encoded = [tok.encode(t).ids for t in texts]
    width = max(map(len, encoded))
    printed = [ast.literal_eval(r) for r in re.findall(r"^    ids  (\[.*\])$", lab01, re.M)]
    masks = [ast.literal_eval(r) for r in re.findall(r"^    mask (\[.*\])$", lab01, re.M)]
    assert printed == [ids + [0] * (width - len(ids)) for ids in encoded]
    assert masks == [[1] * len(ids) + [0] * (width - len(ids)) for ids in encoded]
    assert f"({len(texts)}, {width})  (B, S)" in lab01
    assert number(r"(\d+) merges", lab01) == 2000 - 3 - 256
    assert "vocabulary 2000, padded to V = 2048 rows" in lab01


def test_lab01_lookup_costs_and_parameters(lab01):
    width = len(re.findall(r"^    mask (\[.*\])$", lab01, re.M)[0].split(","))
    B, V, D = 2, 2048, 64
    assert "equal, bit for bit: True" in lab01
    assert "pad rows are zero (padding_idx): True" in lab01
    assert number(r"FLOPs, lookup:\s+([\d,]+)", lab01) == 0
    assert number(r"FLOPs, one-hot matmul:\s+([\d,]+)", lab01) == 2 * B * width * V * D
    assert number(r"^  untied:\s+([\d,]+)", lab01) == 2 * V * D
    assert number(r"^  tied:\s+([\d,]+)", lab01) == V * D


def test_lab02_shapes_variance_and_gqa(starter):
    out = starter(LABS / "lab-02-qkv-shape-walkthrough/qkv_shapes.py")
    B, S, D, H, H_kv = 2, 6, 64, 8, 2
    Dh = D // H
    expected = {
        "x": (B, S, D),
        "q_proj(x)": (B, S, H * Dh),
        "q": (B, H, S, Dh),
        "scores": (B, H, S, S),
        "repeat_kv(k)": (B, H, S, Dh),
        "out": (B, S, D),
    }
    for name, shape in expected.items():
        assert re.search(rf"^  {re.escape(name)}\s+{re.escape(str(shape))}\s*$", out, re.M), name
    assert re.search(rf"^  k\s+{re.escape(str((B, H_kv, S, Dh)))}\s*$", out, re.M)  # the GQA keys
    assert "q[:, 1] is channels 8..15 of q_proj(x): True" in out
    assert "same shape: True, same values: False" in out
    raw = float(re.search(r"q\.k\s+var\s+([\d.]+)", out).group(1))
    scaled = float(re.search(r"q\.k / sqrt\(Dh\) var\s+([\d.]+)", out).group(1))
    assert raw == pytest.approx(Dh, rel=0.03) and scaled == pytest.approx(1, rel=0.03)  # var(sum of Dh products) = Dh
    unscaled_max, scaled_max = map(float, re.search(r"([\d.]+) unscaled, ([\d.]+) scaled", out).groups())
    assert unscaled_max > 2 * scaled_max > 1 / 128
    assert f"query head j reads KV head j // {H // H_kv}: True" in out
    assert number(r"MHA: K and V projection weights ([\d,]+)", out) == 2 * D * D
    assert number(r"GQA: K and V projection weights ([\d,]+)", out) == 2 * D * H_kv * Dh


def test_lab03_masks_leak_decode_and_empty_rows(starter):
    out = starter(LABS / "lab-03-causal-mask-attention/causal_mask.py")
    S = 5
    rows = re.findall(r"^  query (\d): ([0\- ]+)$", out, re.M)
    causal, padded = rows[:S], rows[S:]
    for i, r in causal:  # j <= i visible
        assert r.split() == ["0" if j <= int(i) else "-" for j in range(S)]
    real = [0, 0, 1, 1, 1]
    for i, r in padded:  # causal and the key is a real token
        assert r.split() == ["0" if j <= int(i) and real[j] else "-" for j in range(S)]
    assert "hidden value: -3.4028e+38" in out  # float32's most negative finite value
    assert "rows sum to 1: True" in out and "weight on future keys: 0.0e+00" in out
    assert "equals SDPA(is_causal=True): True" in out
    sums = ast.literal_eval(re.search(r"row sums, head 0: (\[.*\])", out).group(1))
    assert sums[-1] == 1.0 and all(0 < s < 1 for s in sums[:-1])  # the last row sees every key
    assert "masked before: output changes by 0.0e+00" in out
    assert float(re.search(r"masked after:  its weight on key 0 changes by ([\d.]+)", out).group(1)) > 0.01
    assert "mask 0 0 0 0 0  shape (1, 5)" in out and "equals the last row of the full pass: True" in out
    assert "-inf mask:       [nan, nan, nan, nan, nan]" in out
    assert "finfo.min mask:  [0.2, 0.2, 0.2, 0.2, 0.2]" in out  # uniform over the 5 keys
    assert "boolean mask all False: output all zero: True" in out


def test_lab04_equalities_and_flop_table(starter):
    out = starter(LABS / "lab-04-multi-head-attention/multi_head_attention.py")
    diffs = [float(d) for d in re.findall(r"max \|diff\| (\S+)", out)]
    assert len(diffs) == 3 and max(diffs) < 1e-5
    assert "sum of 8 per-head terms = output: True" in out
    assert "head 0's term reaches 64 of 64 output channels" in out
    D, rows = 4096, re.findall(r"^\s+(\d+)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)$", out, re.M)
    assert [int(r[0]) for r in rows] == [1024, 4096, 8192, 32768]
    for s, proj, att, ratio in rows:
        s = int(s)
        assert int(proj.replace(",", "")) == 8 * s * D**2  # four D x D projections, 2 FLOPs per weight per token
        assert int(att.replace(",", "")) == 4 * s**2 * D  # QK^T and PV, 2 S^2 D each
        assert float(ratio) == pytest.approx(s / (2 * D), abs=0.006)  # printed to two decimals
    assert "crossing at S* = 8,192 = 2 D" in out
    assert "fused CPU kernel: 0 FLOPs" in out


def test_lab05_frequencies_layouts_relative_positions_cache_and_scaling(starter):
    out = starter(LABS / "lab-05-rope-mental-model/rope_reading.py")
    Dh, base = 8, 10000.0
    rows = re.findall(r"pair (\d): omega ([\d.]+) rad/token, a full turn every ([\d,.]+) tokens", out)
    for i, omega, turn in rows:
        expected = base ** (-2 * int(i) / Dh)
        assert float(omega) == pytest.approx(expected, rel=1e-5)
        assert float(turn.replace(",", "")) == pytest.approx(2 * math.pi / expected, abs=0.06)
    assert len(rows) == Dh // 2
    assert "apply_rope(layout='half'): True" in out and "lengths unchanged (a rotation): True" in out
    assert "interleaved = half: False" in out
    assert "interleaved[..., perm] = half(q[..., perm]): True  perm [0, 2, 4, 6, 1, 3, 5, 7]" in out
    scores = {int(d): [] for d in (1, 2)}
    for _, _, d, value in re.findall(r"m=\s*(\d+) n=\s*(\d+)  m-n=(\d)  score ([+-][\d.]+)", out):
        scores[int(d)].append(float(value))
    assert len(set(scores[2])) == 1 and len(scores[2]) == 3  # same offset, same score, at positions up to 503
    assert scores[1][0] != scores[2][0]
    wrong = float(re.search(r"run as half: max \|diff\| ([\d.]+)", out).group(1))
    fixed = float(re.search(r"after permuting q_proj/k_proj rows: max \|diff\| (\S+)", out).group(1))
    assert wrong > 0.01 and fixed < 1e-12
    assert "decode step = full pass, last row: True" in out
    assert "cached values = v_proj(x), unrotated: True" in out
    assert float(re.search(r"rotating cached keys again: max \|diff\| ([\d.]+)", out).group(1)) > 0.001
    waves = {
        name: (float(fast), float(slow.replace(",", "")))
        for name, fast, slow in re.findall(r"^  (\w+)\s+fastest\s+([\d.]+)\s+slowest\s+([\d,.]+)$", out, re.M)
    }
    (o_fast, o_slow), (l_fast, l_slow), (n_fast, n_slow) = waves["original"], waves["linear"], waves["ntk"]
    assert o_fast == pytest.approx(2 * math.pi, abs=0.01) and o_slow == pytest.approx(2 * math.pi * 1000, abs=0.1)
    assert l_fast == pytest.approx(4 * o_fast, abs=0.02) and l_slow == pytest.approx(4 * o_slow, abs=0.2)
    assert n_fast == o_fast and n_slow == pytest.approx(4 * o_slow, abs=0.2)  # NTK keeps the fastest pair
