"""The DiffSynth Lab 08 starter runs, and its table agrees with a residency plan worked out here by hand."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffsynth/lab-08-offload-memory-saving/offload_plan.py"
GiB = 2**30
d, f = 5120, 13824  # Wan 2.1 14B hidden and FFN width
BLOCK = 2 * (8 * d * d + 2 * d * f + f + 21 * d)  # bf16 bytes of one DiT block
DIT = 2 * 14_288_491_584  # WanTransformer3DModel() on the meta device
HEAD = 2 * (2 * d + d * 16 * 4 + 16 * 4)
EMBED = DIT - 40 * BLOCK - HEAD
TE, VAE = 2 * 5_680_910_336, 2 * 126_892_531
TE_EMBED = 2 * 256384 * 4096
TE_BLOCK = 2 * (4 * 4096 * 4096 + 3 * 4096 * 10240 + 2 * 4096 + 32 * 64)
TE_NORM = 2 * 4096


def dit_split(budget: int) -> tuple[int, int]:
    """Kept and streamed DiT bytes: embeddings, then whole blocks while they fit beside one block, then the head."""
    room = budget - BLOCK - EMBED
    kept_blocks = min(40, room // BLOCK)
    kept = EMBED + kept_blocks * BLOCK + HEAD
    return kept, (40 - kept_blocks) * BLOCK


def te_streamed(budget: int) -> int:
    """Text encoder bytes streamed per call: all of it fits, or the embedding plus blocks beside one embedding."""
    if TE <= budget:
        return 0
    room = budget - TE_EMBED - TE_EMBED  # the embedding is the largest unit: it is also the reserve
    return (24 - min(24, room // TE_BLOCK)) * TE_BLOCK


def diffsynth_split(limit: int, units: list[int]) -> tuple[int, int]:
    """Kept and streamed bytes under DiffSynth's rule: a unit stays if the bytes already kept are under the limit."""
    kept = streamed = 0
    for b in units:
        if kept < limit:
            kept += b
        else:
            streamed += b
    return kept, streamed


@pytest.fixture(scope="module")
def out(starter) -> str:
    return starter(STARTER)


def table(out: str) -> dict[str, tuple[float, str, float, float, float]]:
    rows = re.findall(r"^  (\S.*?)\s{2,}([\d.]+)\s+(yes|no)\s+([\d.]+)\s+(\d+)\s+([\d.]+)$", out, re.M)
    return {name: (float(p), fits, float(c), float(t), float(s)) for name, p, fits, c, t, s in rows}


DIT_UNITS = [EMBED] + [BLOCK] * 40 + [HEAD]


def test_components(out):
    assert re.search(rf"text_encoder\s+26 units\s+{TE / GiB:.2f} GiB", out)
    assert re.search(rf"dit\s+42 units\s+{DIT / GiB:.2f} GiB", out)
    assert re.search(rf"vae\s+1 units\s+{VAE / GiB:.2f} GiB", out)
    kept, streamed = diffsynth_split(16 * GiB, DIT_UNITS)
    assert streamed == 16 * BLOCK + HEAD  # the embeddings and 24 blocks stay; 16 blocks and the head stream
    assert f"DiT, DiffSynth vram_limit=16: keeps 25 units ({kept / GiB:.1f} GiB), streams 17" in out
    assert kept > 16 * GiB  # no reserve: the last check was made at 15.x GiB


def test_policy_table(out):
    rows = table(out)
    assert len(rows) == 8
    total, calls = TE + DIT + VAE, 100
    assert rows["all resident"] == pytest.approx((total / GiB, "no", 0, total / GiB, 0), abs=0.51)
    assert rows["model offload"] == pytest.approx((DIT / GiB, "no", 0, total / GiB, 0), abs=0.51)
    for name, limit in (("planner, 24 GiB", 24), ("planner, 16 GiB", 16)):
        kept, streamed = dit_split(limit * GiB)
        peak, fits, per_call, moved, copy_s = rows[name]
        assert peak <= limit and fits == "yes"
        assert per_call == pytest.approx(streamed / GiB, abs=0.005)
        assert copy_s == pytest.approx(2 * streamed / 25e9, abs=0.005)
        te_again = te_streamed(limit * GiB)  # the negative prompt streams these again
        assert moved == pytest.approx((TE + te_again + kept + calls * streamed + VAE) / GiB, abs=0.5)
    for name in ("planner, none", "DiffSynth, 0"):  # nothing stays: every unit is copied in at every call
        peak, fits, per_call, moved, copy_s = rows[name]
        assert peak == pytest.approx(2 * 256384 * 4096 / GiB, abs=0.05)  # the text encoder's embedding
        assert per_call == pytest.approx(DIT / GiB, abs=0.005)
        assert moved == pytest.approx((2 * TE + calls * DIT + VAE) / GiB, abs=0.5)
    kept, streamed = diffsynth_split(16 * GiB, DIT_UNITS)
    peak, fits, per_call, moved, copy_s = rows["DiffSynth, 16"]
    assert peak == pytest.approx((kept + BLOCK) / GiB, abs=0.05) and peak > 16  # above its limit
    assert per_call == pytest.approx(streamed / GiB, abs=0.005)
    assert moved == pytest.approx((TE + DIT + (calls - 1) * streamed + VAE) / GiB, abs=0.5)
    assert rows["DiffSynth, None"] == pytest.approx((DIT / GiB, "no", 0, total / GiB, 0), abs=0.51)


def test_copy_time_against_compute(out):
    d, ffn, L = 5120, 13824, 512
    n = 21 * 30 * 52
    call = 40 * (12 * n * d * d + 4 * L * d * d + 4 * n * d * ffn + 4 * n * n * d + 4 * n * L * d)
    assert f"so {2 * call / 400e12:.1f} s of DiT compute per step at 480p" in out
