"""DiffSynth Lab 12's starter: what it prints, recomputed here by hand or from torch.

The starter runs its ranks as two real gloo processes through ``run_ranks``;
these read its output (the session fixture ``starter``) and check each number a
reader takes away against an independent computation.
"""

import math
import re
from pathlib import Path

import pytest
import torch

from infralens.distributed import RankError, run_ranks
from infralens.nets import TinyVideoDiT

ROOT = Path(__file__).resolve().parents[2]

STARTER = "diffsynth/lab-12-sequence-parallel-video-dit/sequence_parallel.py"


def test_shards_and_padding(starter):
    out = starter(STARTER)
    # 9 frames -> 1 + 8/4 = 3 latent frames; 48x80 px / 8 / 2 (patch) = 3 x 5 tokens
    S = 3 * (48 // 16) * (80 // 16)
    assert S == 45
    assert f"48x80, 9 frames -> {S} tokens on 2 ranks:" in out
    assert "padded to 46, 23 per rank" in out  # ceil(45 / 2) = 23
    assert "x shard (1, 23, 32) (B, s, D)" in out
    assert "q, k, v shard (1, 4, 23, 8) (B, H, s, Dh)" in out


def test_every_rank_holds_all_the_weights(starter):
    out = starter(STARTER)
    whole = sum(p.numel() for p in TinyVideoDiT(text_dim=32, dim=32, num_heads=4).parameters())
    assert f"parameters on rank 0: {whole:,}" in out
    assert f"parameters on rank 1: {whole:,}" in out


def test_each_scheme_equals_one_process_and_the_unmasked_ring_does_not(starter):
    out = starter(STARTER)
    gaps = dict(re.findall(r"^  (\S.*?)\s+max \|difference\| (\S+)$", out, re.M))
    assert set(gaps) == {"ulysses", "ring", "ring, padding not hidden", "cfg parallel"}
    for name in ("ulysses", "ring", "cfg parallel"):
        assert float(gaps[name]) < 1e-12, (name, gaps[name])
    assert float(gaps["ring, padding not hidden"]) > 1e-6  # the padded key, projected, gets weight


def test_bytes_sent_match_the_formulas(starter):
    out = starter(STARTER)
    s, d, H, b = 23, 8, 4, 8  # tokens per rank, head dim, heads, float64
    ulysses = (2 - 1) / 2 * s * d * 4 * H * b  # q, k, v, o shards, half of each leaves
    ring = (2 - 1) * s * d * 2 * H * b  # my K and V block, passed once
    cfg = 16 * 3 * 6 * 10 * b  # one branch's prediction (B, C, F', H', W') goes to the peer
    for name, value in (("ulysses", ulysses), ("ring", ring), ("cfg", cfg)):
        assert re.search(rf"^  {name}\s+{value:,.0f}  counted within 1 KiB: True$", out, re.M), name


def test_wan_480p_numbers(starter):
    out = starter(STARTER)
    tokens = 21 * 30 * 52  # 1 + 80/4 latent frames, 480/16 x 832/16 patches
    assert f"Wan 2.1 14B, 480x832, 81 frames: {tokens:,} tokens," in out
    assert "40 heads x 128, bf16. MiB sent per rank:" in out
    for n in (2, 4, 8):
        s = math.ceil(tokens / n)
        u = (n - 1) / n * s * 128 * 4 * 40 * 2 / 2**20
        r = (n - 1) * s * 128 * 2 * 40 * 2 / 2**20
        assert f"  {n} ranks, per layer: ulysses {u:6.1f}  ring {r:6.1f}" in out
    assert f"CFG parallel on 2 ranks, once per step: {16 * 21 * 60 * 104 * 2 / 2**20:.1f}" in out
    params = 14_288_491_584  # Wan 2.1 14B's DiT, counted by tox -e upstream on diffusers' model
    assert f"DiT weights on every rank, any rank count: {params * 2 / 1e9:.1f} GB" in out


def test_ulysses_head_rule_for_the_two_wan_sizes(starter):
    out = starter(STARTER)
    assert "wan2.1-t2v-14b: 40 heads on 8 ranks: fine" in out
    assert "wan2.1-t2v-1.3b: ValueError:" in out
    assert "e.g. heads=8 or 16; got 12" in " ".join(out.split())


def test_the_cfg_reference_is_guidance():
    # the starter's reference, cfg_combine(uncond, cond, w), is uncond + w (cond - uncond)
    from infralens.diffusion import cfg_combine

    u, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])
    assert cfg_combine(u, c, 5.0).tolist() == [11.0, -8.0]


def test_the_output_shown_on_the_page_is_what_the_starter_prints(starter):
    # the page includes sequence_parallel_output.txt; float64 rounding differences may vary in their last
    # digits between machines, so those are compared by size class, everything else exactly
    out = starter(STARTER)
    shown = (ROOT / "code" / STARTER).with_name("sequence_parallel_output.txt").read_text()
    gap = re.compile(r"max \|difference\| (\S+)$")

    def normalised(text):
        lines = []
        for line in text.splitlines():
            m = gap.search(line)
            if m:
                size = float(m.group(1))
                line = line[: m.start(1)] + ("<1e-12" if size < 1e-12 else ">1e-6" if size > 1e-6 else m.group(1))
            lines.append(line)
        return lines

    assert normalised(out) == normalised(shown)


def test_three_ranks_cannot_share_four_heads_and_the_run_says_which_rank_failed():
    # the starter's worker on 3 processes: Ulysses refuses in a rank, run_ranks stops the others and reports it
    with pytest.raises(RankError) as err:
        run_ranks(f"{ROOT / 'code' / STARTER}:worker", 3, timeout=90)
    assert err.value.kind == "ValueError"
    assert "heads must be divisible by world_size=3" in err.value.message
    assert "e.g. heads=3 or 6; got 4" in err.value.message
