"""The printed values of the labs 06-09 starters, recomputed here by hand or from torch.

``tests/test_starters.py`` already runs every starter; these read what each
prints and check the numbers a reader takes away.
"""

import math
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CODE = ROOT / "code" / "distributed"


@pytest.fixture
def run(starter):
    """``run(relative)``: what the starter printed (run once per session by conftest's ``starter``)."""
    return lambda relative: starter(CODE / relative)


def test_lab06_routing_and_expert_parallel(run):
    out = run("lab-06-expert-parallel-routing/expert_routing.py")
    assert f"capacity = ceil(K T / E x 1.25) = {math.ceil(2 * 4096 / 8 * 1.25)}" in out  # 1280
    # the router, rebuilt here: top-2 of a softmax, then first choices claim places first
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4096, 8, generator=g) + torch.linspace(0.6, -0.6, 8)
    experts = torch.softmax(logits, -1).topk(2, -1).indices  # (T, 2)
    for factor in (1.0, 1.25, 1.5, 2.0):
        cap = math.ceil(2 * 4096 / 8 * factor)
        taken, dropped = [0] * 8, 0
        for c in range(2):
            for e in experts[:, c].tolist():
                if taken[e] < cap:
                    taken[e] += 1
                else:
                    dropped += 1
        assert re.search(rf"^\s+{factor}\s+{cap}\s+{dropped}\s+\d+$", out, re.M), (factor, cap, dropped)
    load = torch.bincount(experts.flatten(), minlength=8).tolist()
    for e in range(8):
        assert re.search(rf"expert {e}\s+{load[e]} /\s+{min(load[e], 1280)}", out)
    errors = [float(x) for x in re.findall(r"max \|EP - dense reference\| = (\S+)", out)]
    assert len(errors) == 2 and max(errors) < 1e-5
    sent = [eval(x) for x in re.findall(r"rows sent (\(\d+, \d+\))", out)]
    received = [eval(x) for x in re.findall(r"received (\(\d+, \d+\))", out)]
    assert [s[r] for r, s in enumerate(sent)] == [r[i] for i, r in enumerate(received)]  # rows kept locally
    assert sent[0][1] == received[1][0] and sent[1][0] == received[0][1]  # what one sends, the other gets
    assert "mixtral              renormalises: True" in out


def test_lab07_plan_report(run):
    out = run("lab-07-3d-parallelism-plan/plan_report.py")
    h, f, heads, kv, L, V = 8192, 28672, 64, 8, 80, 32000
    dh = h // heads
    layer = (h * heads * dh + 2 * h * kv * dh + heads * dh * h + 3 * h * f) // 8 + 2 * h
    params = L // 4 * layer + V * h // 8  # stage 0: 20 layers and the embedding's shard
    assert "Memory of the busiest rank (stage 0 of 4)" in out
    assert f"one layer's TP shard             {layer:,} params" in out
    assert f"{params:,} params" in out
    assert f"states at ZeRO-1 (2+2+12/2)  {params * 10 / 1e9:8.2f} GB" in out
    act = 4 * 20 * 4096 * h * 2 / 8  # 4 micro-batches in flight x 20 layers x (b, s/t, h)
    assert f"activations (4 live)         {act / 1e6:8.2f} MB" in out
    tp = 6 * 20 * 16 * 2 * 7 / 8 * 4096 * h * 2  # ring all-reduces of (b, s, h)
    assert re.search(rf"tp\s+all_reduce\s+8\s+1920\s+67\.11 MB\s+{tp / 1e9:.2f} GB", out)
    assert re.search(rf"pp\s+send_recv\s+4\s+16\s+8\.39 MB\s+{16 * 4096 * h * 2 / 8 / 1e6:.2f} MB", out)
    assert "pipeline bubble: 15.79% of wall time, 18.75% of ideal" in out
    assert "stage 1 replica 1: [24 25 26 27 28 29 30 31]  node 3" in out
    assert "rank 13's pp group (13, 29, 45, 61)  spans 4 node(s)" in out
    for words in (
        "e.g. dp: 2",
        "must divide model.kv_heads=4",
        "must divide cluster.gpus_per_node=8",
        "must divide model.layers=60",
        "zero_stage=3",
        "did you mean batch.micro_batches?",
    ):
        assert words in " ".join(out.split()), words


def test_lab08_topology_notes(run):
    out = run("lab-08-topology-communication/topology_notes.py")
    alpha = float(re.search(r"fit: alpha = (\S+) us per step", out).group(1))
    bw = float(re.search(r"1/beta = (\S+) GB/s", out).group(1))
    median = float(re.search(r"median \|error\| (\d+)%", out).group(1)) / 100
    assert alpha > 0 and bw > 0 and median < 0.6
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([+-]\d+)%$", out, re.M)
    assert [int(r[0]) for r in rows] == [4**k for k in range(2, 12)]
    for _, measured, model, err in rows:  # the error column is (model - measured) / measured
        assert int(err) == pytest.approx((float(model) - float(measured)) / float(measured) * 100, abs=1.01)
    assert re.search(r"tp: group of 8 spans 1 node\(s\) -> nvlink", out)
    assert re.search(r"dp: group of 2 spans 2 node\(s\) -> network", out)
    t = 14 * 14e-6 + 1.75 * 2e9 / 50e9  # ring all-reduce of 2 GB over 8 ranks on the network
    assert f"time {t * 1e3:.1f} ms = 14 x alpha + 1.75 n / bandwidth" in out
    assert f"algorithm bandwidth n / T   = {2e9 / t / 1e9:6.2f} GB/s" in out
    assert f"bus bandwidth   v n / T     = {3.5e9 / t / 1e9:6.2f} GB/s" in out
    assert f"latency = bandwidth term at n = {14 * 14e-6 * 50e9 / 1.75 / 1e6:.2f} MB" in out


def test_lab09_cards(run):
    out = " ".join(run("lab-09-interview-scenarios/interview_scenarios.py").split())
    for gb in ("112.00", "38.50", "26.25", "14.00"):  # 16, 4 + 12/8, 2 + 14/8, 16/8 bytes x 7B
        assert f"{gb} GB" in out
    assert "Lowest stage leaving 40% for activations: ZeRO-1" in out  # 38.5 GB < 0.6 x 80 GiB
    assert f"{2 * 7 / 8 * 14e9 / 1e9:.1f} GB sent per rank per step" in out
    assert "bubble 15.79% of wall time (p=4, m=16) = 18.75% over ideal" in out
    assert "each expert accepts 1280 tokens" in out
    assert f"{2 * 4096 * 4096 * 2 / 1e6:.0f} MB per rank per all-to-all" in out
    assert "sends 2(N-1)/N n = 3.50 GB" in out and "70.2 ms" in out
