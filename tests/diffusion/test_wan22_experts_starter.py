"""The DiffSynth Lab 11 starter's printed values, against numbers worked out here independently."""

import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffsynth/lab-11-wan22-experts-ti2v/wan22_experts.py"
GiB = 2**30
EXPERT = 2 * 14_288_491_584  # bf16 bytes of WanTransformer3DModel() counted on the meta device


def k_by_hand(n: int, b: float, s: float) -> int:
    """Solve s u / (1 + (s - 1) u) < b for u = 1 - i / N."""
    return math.floor(n * (1 - b / (s - (s - 1) * b))) + 1


def test_switch_table_and_memory(starter):
    out = starter(STARTER)
    rows = dict(re.findall(r"^  (t2v|i2v)\s+40\s+\S+\s+\S+\s+(\d+\s+\d+)", out, re.M))
    assert rows == {"t2v": f"{k_by_hand(40, 0.875, 12.0)}   14", "i2v": f"{k_by_hand(40, 0.9, 5.0)}   25"}
    assert "high 4.0, low 3.0" in out  # the config lists (low, high): printed the right way round
    assert f"one expert                {EXPERT / GiB:6.1f} GiB" in out
    assert f"both experts              {2 * EXPERT / GiB:6.1f} GiB" in out
    assert f"peak, model offload       {EXPERT / GiB:6.1f} GiB" in out
    assert "step 25: t =  878.05 -> dit\n  step 26: t =  865.98 -> dit2" in out


def test_ti2v_tokens(starter):
    out = starter(STARTER)
    assert "(1, 48, 31, 44, 80); sizes step by 32 px" in out  # 1 + 120 / 4 frames, 704 / 16, 1280 / 16
    assert f"{31 * 44 * 80 // 4:,} tokens: {44 * 80 // 4:,} of frame 0 at t = 0" in out
    assert "frame 0 is the image: True; the rest reached 0.5: True" in out
