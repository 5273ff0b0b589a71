"""Every lab starter runs with `python <file>`, and what it prints is right.

Starters are discovered, so a new one is run without touching this file; the
checks below compare printed numbers with values computed independently here.
"""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTERS = sorted((ROOT / "code").glob("*/lab-*/*.py"))


def run(path: Path) -> str:
    proc = subprocess.run([sys.executable, path.name], cwd=path.parent, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return proc.stdout


@pytest.mark.parametrize("path", STARTERS, ids=lambda p: str(p.relative_to(ROOT / "code")))
def test_starter_runs_and_prints(path):
    out = run(path)
    assert len(out.splitlines()) >= 5, "a starter prints an annotated trace"


def test_there_are_starters():
    assert len(STARTERS) >= 2


def linear_alpha_bar(t: int, T: int = 1000, start: float = 1e-4, end: float = 0.02) -> float:
    return math.prod(1 - (start + (end - start) * s / (T - 1)) for s in range(t + 1))


def test_forward_noise_trace():
    out = run(ROOT / "code/diffuser/lab-01-forward-noise-process/forward_noise.py")
    assert re.search(r"x_t\s+\(4, 4, 64, 64\)\s+torch.float32", out)
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+(-?[\d.]+)$", out, re.M)
    assert [int(r[0]) for r in rows] == [0, 250, 500, 999]
    for t, ab, a, b, snr, corr in rows:
        expected = linear_alpha_bar(int(t))
        assert float(ab) == pytest.approx(expected, abs=1e-6)
        assert float(a) == pytest.approx(math.sqrt(expected), abs=1e-6)
        # alpha_bar is stored in float32, whose spacing near 1 (6e-8) is 6e-4 of 1 - alpha_bar at t = 0
        assert float(b) == pytest.approx(math.sqrt(1 - expected), rel=1e-3)
        assert float(snr) == pytest.approx(expected / (1 - expected), rel=1e-3)
        assert float(corr) == pytest.approx(math.sqrt(expected), abs=0.02)  # unit-variance x0 and eps
    err = float(re.search(r"max \|error\| = (\S+)", out).group(1))
    assert err < 1e-3
    linear = re.search(r"^\s+linear\s+(.*)$", out, re.M).group(1).split()
    assert float(linear[2]) == pytest.approx(linear_alpha_bar(250) / (1 - linear_alpha_bar(250)), rel=1e-3)


def test_latent_shapes_trace():
    out = run(ROOT / "code/diffsynth/lab-03-latent-shape-tracking/latent_shapes.py")
    expected = {  # batch 1, 81 frames, 480x832: F' = 1 + 80 / t_f, H' = 480 / s, W' = 832 / s
        "sd": (1, 4, 60, 104),
        "flux": (1, 16, 60, 104),
        "wan2.1": (1, 16, 21, 60, 104),
        "wan2.2": (1, 48, 21, 30, 52),
        "hunyuanvideo": (1, 16, 21, 60, 104),
        "cogvideox": (1, 16, 21, 60, 104),
        "ltxvideo": (1, 128, 11, 15, 26),
    }
    for family, shape in expected.items():
        assert re.search(rf"^\s+{re.escape(family)}\s.*{re.escape(str(shape))}\s+{math.prod(shape):,}$", out, re.M)
    assert "(1, 16, 81, 60, 104), 3.86x too big" in out
    assert f"21 x 30 x 52 = {21 * 30 * 52:,}" in out
    assert "Per-frame view for 2-D layers: (21, 16, 60, 104)" in out
    assert "nearest valid: 77 or 81" in out
