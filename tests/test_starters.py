"""Every lab starter runs with `python <file>`, and what it prints is right.

Starters are discovered, so a new one is run without touching this file; the
checks below compare printed numbers with values computed independently here.
Every test reads a starter's output through the session fixture ``starter``
(``conftest.py``): each starter runs once per session, however many tests (this
smoke test, the area's content tests) read what it printed.
"""

import ast
import importlib.util
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTERS = sorted((ROOT / "code").glob("*/lab-*/*.py"))
STARTER_PATH = re.compile(r"lab-\d\d-[\w-]+/\w+\.py")  # a starter, named from code/ or its track folder
UPSTREAM = ("diffusers", "transformers", "peft", "tokenizers")
"""Libraries a starter may read by running them (labs about diffusers' own code); tox -e upstream installs them."""


def missing(path: Path) -> list[str]:
    """The upstream libraries ``path`` imports that are not installed here."""
    used = re.findall(rf"^(?:import|from) ({'|'.join(UPSTREAM)})\b", path.read_text(), re.M)
    return [name for name in dict.fromkeys(used) if importlib.util.find_spec(name) is None]


@pytest.mark.parametrize("path", STARTERS, ids=lambda p: str(p.relative_to(ROOT / "code")))
def test_starter_runs_and_prints(path, starter):
    if missing(path):
        pytest.skip(f"reads {', '.join(missing(path))} by running it: tox -e upstream runs this starter")
    out = starter(path)
    assert len(out.splitlines()) >= 5, "a starter prints an annotated trace"


def test_there_are_starters():
    assert len(STARTERS) >= 2


def test_tests_run_starters_only_through_the_fixture():
    # a test that starts a starter itself runs it a second time in the same session
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        text = path.read_text()
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        if STARTER_PATH.search(text) and imported & {"subprocess", "runpy"}:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"run starters with the `starter` fixture (conftest.py), not a subprocess: {offenders}"


def test_each_starter_ran_once(starter, starter_runs):
    # every starter read (again) here, after its smoke test and the content tests collected before
    # this one: each ran exactly once in this session
    for path in STARTERS:
        if missing(path):  # run (once) all the same: it stops at its first upstream import
            with pytest.raises(pytest.fail.Exception, match="exited 1"):
                starter(path)
        else:
            starter(path)
    assert starter_runs() == len(STARTERS)


def linear_alpha_bar(t: int, T: int = 1000, start: float = 1e-4, end: float = 0.02) -> float:
    return math.prod(1 - (start + (end - start) * s / (T - 1)) for s in range(t + 1))


def test_forward_noise_trace(starter):
    out = starter("diffuser/lab-01-forward-noise-process/forward_noise.py")
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


def test_latent_shapes_trace(starter):
    out = starter("diffsynth/lab-03-latent-shape-tracking/latent_shapes.py")
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


def test_scheduler_loop_trace(starter):
    """Lab 04: the printed Wan timesteps are the shifted grid by hand; calls are N or 2N; Euler's error shrinks."""
    out = starter("diffsynth/lab-04-scheduler-loop-reading/scheduler_loop.py")
    rows = re.findall(r"^\s+(\d)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert len(rows) == 10
    for i, u, _, t in rows:
        u_i = 1 - int(i) / 10
        assert float(u) == pytest.approx(u_i, abs=5e-4)
        assert float(t) == pytest.approx(1000 * 5 * u_i / (1 + 4 * u_i), abs=0.005)  # shift 5
    assert "Point-mass data: 10 calls" in out
    err = {int(n): float(e) for n, e in re.findall(r"^\s+(\d+) steps\s+max \|error\| = ([\d.]+)", out, re.M)}
    assert err[50] < err[10] / 4  # first order: five times the steps, about a fifth of the error
    cost = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+(\d+)\s+([\d,]+)$", out, re.M)
    assert len(cost) == 4
    flops = {(int(n), float(w)): (int(c), int(f.replace(",", ""))) for n, w, c, f in cost}
    for (n, w), (calls, f) in flops.items():
        assert calls == n * (1 if w == 1.0 else 2)
        assert f == calls * flops[(10, 1.0)][1] // 10  # every call costs the same


def test_conditioning_flow_trace(starter):
    """Lab 05: the FLOPs printed for one Wan 2.1 14B block equal the matrix products counted by hand."""
    out = starter("diffsynth/lab-05-conditioning-flow/conditioning_flow.py")
    assert "image (1) CLIP-like tokens        (1, 257, 24)" in out
    assert "latents + y             (1, 36, 3, 4, 6)" in out
    assert "After 4 guided steps (8 DiT calls)" in out
    N, D = 21 * 30 * 52, 5120  # 480x832x81 after the VAE and (1, 2, 2) patches; Wan 2.1 14B width
    by_hand = {
        "self-attention": 8 * N * D * D + 4 * N * N * D,  # q, k, v, o over N; Q K^T and P V
        "cross, text only": 4 * N * D * D + 4 * 512 * D * D + 4 * N * 512 * D,  # q, o over N; k, v over L
        "cross, text + image": 4 * N * D * D + 4 * 769 * D * D + 4 * N * 769 * D,  # plus 257 CLIP tokens
    }
    for name, flops in by_hand.items():
        printed = re.search(rf"^\s+{re.escape(name)}\s+([\d.]+) TFLOP", out, re.M)
        assert float(printed.group(1)) == pytest.approx(flops / 1e12, abs=0.005), name
    extra = by_hand["cross, text + image"] - by_hand["cross, text only"]
    assert f"the image branch adds {extra / 1e12:.2f} TFLOP" in out


# --- the distributed track: each starter starts its own gloo processes -------------------------------

DIST = ROOT / "code" / "distributed"


def test_ddp_buckets_trace(starter):
    out = starter(DIST / "lab-01-ddp-gradient-buckets/ddp_gradient_buckets.py")
    layer = (32 * 32 + 32) * 4  # bytes of one Linear(32, 32)'s weight and bias in float32
    assert f"holds all {4 * 1056:,} parameters" in out
    rows = re.findall(r"^\s+(\d)\s+(\d)\s+([\d,]+)\s+(.+)$", out, re.M)
    assert rows[0] == ("0", "0", f"{4 * layer:,}", "all 8")  # first step: one bucket
    later = [(s, b, n, names) for s, b, n, names in rows if s == "1"]
    assert [names for *_, names in later] == [f"layers.{i}.bias layers.{i}.weight" for i in (3, 2, 1, 0)]
    assert {n for _, _, n, _ in later} == {f"{layer:,}"}
    assert f"ring formula 2(N-1)/N * n: {2 * (2 - 1) // 2 * 4 * layer:,}" in out
    assert "rank 1 saw the same buckets in the same order: True" in out
    assert float(re.search(r"one process on the whole batch\n  max \|difference\| (\S+)", out).group(1)) < 1e-6
    assert "all-reduces inside no_sync: 0, after it: 4" in out
    assert "step 0: 0 all-reduces so far; used.weight.grad[0, 0] rank 0 2.0, rank 1 4.0" in out
    assert "step 1: RuntimeError: Expected to have finished reduction in the prior iteration" in out
    assert "step 0: 1 all-reduces so far; used.weight.grad[0, 0] rank 0 3.0, rank 1 3.0" in out


def test_zero_fsdp_trace(starter):
    out = starter(DIST / "lab-02-zero-fsdp-state-sharding/zero_fsdp_states.py")
    for stage, gb in enumerate((16 * 7, 4 * 7 + 12 * 7 / 8, 2 * 7 + 14 * 7 / 8, 16 * 7 / 8)):
        assert re.search(rf"stage {stage}:\s+{gb:.2f} GB", out)
    assert "stage 3 with 12 bytes per parameter: 10.50 GB" in out
    psi = 16 * 64 + 64 + 64 * 64 + 64 + 64 * 8 + 8
    assert f"({psi:,} float32 parameters in all)" in out
    assert re.search(rf"weights\s+{psi * 4 // 2:,}\n\s+gradients\s+{psi * 4 // 2:,}\n\s+adam\s+{psi * 8 // 2:,}", out)
    assert re.search(r"up.weight\s+\(64, 16\)\s+\(32, 16\)\s+\(Shard\(dim=0\),\)", out)
    assert re.search(r"_allgather_base_\s+6\n\s+c10d._reduce_scatter_base_\s+3", out)
    assert re.search(rf"ring collectives \(NCCL-like\):\s+{3 * psi * 4 // 2:,}", out)
    counted = int(re.search(r"counted on gloo by the kernel:\s*([\d,]+)", out).group(1).replace(",", ""))
    assert 4 * psi * 4 // 2 <= counted < 4 * psi * 4 // 2 * 1.1  # gloo: all-gathers plus an all-reduce
    plain, sharded = re.search(r"unsharded model ([\d,]+) bytes, FSDP ([\d,]+) bytes", out).groups()
    assert plain == sharded


def test_tensor_parallel_trace(starter):
    out = starter(DIST / "lab-03-tensor-parallel-linear/tensor_parallel_linear.py")
    assert "shards concatenate to h: True" in out
    assert float(re.search(r"one all-reduce: max \|y - y_1proc\| (\S+)", out).group(1)) < 1e-5
    assert f"({4 * 32 * 16 * 4:,} bytes): ring formula {4 * 32 * 16 * 4:,} bytes sent" in out
    assert float(re.search(r"result shape \(4, 32, 32\), max \|error\| vs h\[\.\.\., :32\]: (\S+)", out).group(1)) > 0.5
    assert re.search(r"down.weight local \(16, 32\)\s+\(Shard\(dim=1\),\)", out)
    assert "collectives in forward: {'c10d_functional.all_reduce': 1}" in out
    assert "rank 0: 6 features, parts of heads [0, 1]" in out and "rank 1: 6 features, parts of heads [1, 2]" in out


def test_pipeline_schedule_trace(starter):
    out = starter(DIST / "lab-04-pipeline-schedule-reading/pipeline_schedule.py")
    assert f"(p-1)/(m+p-1) = {3 / 19:.4f}   simulated {3 / 19:.4f}" in out
    assert f"(p-1)/m       = {3 / 16:.4f}   simulated {3 / 16:.4f}" in out
    assert "activations held per stage [8, 8, 8, 8]" in out and "activations held per stage [4, 3, 2, 1]" in out
    assert re.search(r"^\s+32\s+0\.0857\s+32\s+4$", out, re.M)
    assert out.count("stage 0 ran: F0 F1 F2 F3 B0 B1 B2 B3") == 1  # GPipe
    assert "stage 0 ran: F0 F1 B0 F2 B1 F3 B2 B3" in out and "stage 1 ran: F0 B0 F1 B1 F2 B2 F3 B3" in out
    for loss, alone in re.findall(r"loss (\S+), one process (\S+);", out):
        assert loss == alone


def test_sequence_parallel_trace(starter):
    out = starter(DIST / "lab-05-sequence-context-parallel/sequence_context_parallel.py")
    assert "97 tokens on 2 ranks: padded to 98, 49 per rank" in out
    for name, gap in re.findall(r"^  (megatron|ulysses|ring)\s+max \|difference\| (\S+)$", out, re.M):
        assert float(gap) < 1e-12, name
    assert "rank 0: step 0: rank 0's block computed, step 1: rank 1's block skipped" in out
    per_rank = 1 * 4 * 49 * 16 * 8  # one (B, H, s, Dh) float64 shard
    for formula, counted in re.findall(r"attention\s+([\d,]+)\s+([\d,]+)$", out, re.M):
        assert int(formula.replace(",", "")) == 2 * per_rank  # at N = 2: 4 shards / 2, or K and V once
        assert 0 <= int(counted.replace(",", "")) - 2 * per_rank < 1024
    assert re.search(r"ulysses\s+112\n\s+ring\s+448\n\s+megatron\s+896", out)
    assert "e.g. heads=4 or 6; got 5" in out
