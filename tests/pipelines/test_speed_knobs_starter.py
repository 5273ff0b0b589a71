"""The diffuser Lab 12 starter runs, and what it prints agrees with numbers computed here.

The starter compiles one block with inductor (a C++ compiler is needed; the first compile takes tens of
seconds on a small machine). It runs once per session, through the ``starter`` fixture (``conftest.py``).
"""

import re

import pytest

from infralens.memory import wan_dit_layer_params
from infralens.nets import TinyDiT

STARTER = "diffuser/lab-12-inference-speed-knobs/speed_knobs.py"


@pytest.fixture
def out(starter) -> str:
    return starter(STARTER)


def test_attention(out):
    kernels = dict(re.findall(r"^  (float32|bfloat16|bool mask|dropout 0\.1)\s+(\w+)$", out, re.M))
    assert kernels == {"float32": "FLASH_ATTENTION", "bfloat16": "FLASH_ATTENTION", "bool mask": "FLASH_ATTENTION",
                       "dropout 0.1": "MATH"}  # fmt: skip
    math_peak, fused_peak = (
        int(v.replace(",", "")) for v in re.search(r"math path ([\d,]+), fused ([\d,]+)", out).groups()
    )
    scores, output = 2 * 1024 * 1024 * 4, 2 * 1024 * 64 * 4
    assert math_peak >= 2 * scores  # the scores and their softmax
    assert fused_peak == output + 2 * 1024 * 4  # the output and one log-sum-exp per query row: no S x S


def test_first_block_cache(out):
    rows = re.findall(r"^  (0\.\d+)\s+(\d+)\s+(\S+)$", out, re.M)
    skipped = [int(s) for _, s, _ in rows]
    moved = [float(m) for _, _, m in rows]
    assert [t for t, _, _ in rows] == ["0.05", "0.1", "0.2"]
    assert all(s % 5 == 0 for s in skipped)  # a skipped call skips the 5 blocks after the first
    assert skipped == sorted(skipped) and skipped[-1] > 0
    assert all((s == 0) == (m == 0.0) for s, m in zip(skipped, moved, strict=True))  # skipping moves the sample
    assert moved == sorted(moved)


def test_layerwise_casting(out):
    dit = TinyDiT(latent_channels=4, text_dim=32, dim=64, num_layers=6)
    total = sum(p.numel() for p in dit.parameters())
    assert f"before: {{torch.float32: {4 * total}}}" in out
    fp32, fp8 = (
        int(v) for v in re.search(r"after:  \{torch.float32: (\d+), torch.float8_e4m3fn: (\d+)\}", out).groups()
    )
    assert fp32 // 4 + fp8 == total  # every parameter once, in one of the two dtypes
    assert "weight dtype while running: torch.float32," in out and "after: torch.float8_e4m3fn;" in out
    assert 0 < float(re.search(r"output moved by (\S+)", out).group(1)) < 0.1


def test_group_offload(out):
    sizes = {name: int(b.replace(",", "")) for name, b in re.findall(r"^  group (\S+)\s+([\d,]+) bytes$", out, re.M)}
    dit = TinyDiT(latent_channels=4, text_dim=32, dim=64, num_layers=6)
    total = sum(p.numel() * 4 for p in dit.parameters())
    assert sum(sizes.values()) == total
    assert sizes["blocks_0_1"] == 2 * sum(p.numel() * 4 for p in dit.blocks[0].parameters())
    peak = int(re.search(r"peak resident ([\d,]+) of", out).group(1).replace(",", ""))
    assert peak == sizes["top-level"] + sizes["blocks_0_1"]
    assert "+blocks_0_1 blocks.0 blocks.1 -blocks_0_1 +blocks_2_3" in " ".join(out.split())
    block = wan_dit_layer_params()[1] * 2
    assert f"Wan 14B block: {block / 1e9:.2f} GB, {block / 25e9 * 1e3:.1f} ms" in out
    copy_s = block / 25e9
    for c in (0.1, 0.003):
        serial = 40 * (c + copy_s)
        streams = copy_s + 39 * max(c, copy_s) + c
        assert f"{c * 1e3:>3.0f} ms a block, serial : {serial:.2f} s" in out
        assert f"{c * 1e3:>3.0f} ms a block, streams: {streams:.2f} s" in out


def test_regional_compile(out):
    graphs = dict(re.findall(r"^  (first call|the same shapes|another timestep|256 tokens|144 tokens|"
                             r"text of 9 tokens|bfloat16 weights)\s+(\d+)$", out, re.M))  # fmt: skip
    assert [int(v) for v in graphs.values()] == [1, 1, 1, 2, 2, 3, 4]
    first, t1, t2, gap = re.search(
        r"inductor: (\S+) s first call, then (\S+) and (\S+) ms; max \|compiled - eager\| (\S+)", out
    ).groups()
    assert float(gap) < 1e-4
    assert float(first) * 1e3 > max(float(t1), float(t2))  # the first call pays the compile
