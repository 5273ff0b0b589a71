"""Lab 08 · Topology Communication. Run: python topology_notes.py

A collective costs a latency alpha per step plus beta per byte sent. This
script times gloo collectives between two processes on this machine, fits
alpha and beta, shows how far the model is from each measurement, and then
prices each axis of Lab 07's 3-D plan on the link it crosses: NVLink inside
a node, the network between nodes, with bandwidths stated as assumptions.
"""

import textwrap
from pathlib import Path

from infralens.distributed import (
    COLLECTIVES,
    LINKS,
    bus_bandwidth,
    collective_terms,
    collective_time,
    fit_alpha_beta,
    load_plan,
    measure_collectives,
    plan_links,
)

# [1] Setup / contract
NV, NET = LINKS["nvlink"], LINKS["network"]  # assumptions, with sources
LAB07 = Path(__file__).resolve().parents[1] / "lab-07-3d-parallelism-plan"
plan = load_plan(LAB07 / "parallelism_plan.yaml")  # tp 8, pp 4, dp 2


# [2] Main transition
def measure_and_fit():
    """Time 4 collectives x 10 sizes on 2 gloo processes; fit alpha, beta."""
    samples = measure_collectives(2)  # fastest of 15 calls each
    fit = fit_alpha_beta(samples, 2)  # T = s alpha + v n beta
    ar = collective_terms("all_reduce", 2)  # ring, N = 2: s = 2, v = 1
    by_hand = ar.steps * fit.alpha + ar.volume * 4 * 1024**2 * fit.beta
    assert abs(by_hand - fit.predicted[9]) < 1e-12  # all_reduce, 4 MiB
    return samples, fit


# [3] Interview hook
n, N = 2e9, 8  # a 2 GB gradient (n bytes) all-reduced over N = 8 ranks
t_net = collective_time("all_reduce", n, N, alpha=NET.alpha, beta=NET.beta)
algbw, busbw = bus_bandwidth("all_reduce", n, t_net, N)  # n/T, v n/T
ring = collective_terms("all_reduce", N)  # s = 14 steps, v = 1.75
crossover = ring.steps * NET.alpha / (ring.volume * NET.beta)  # bytes
axes = plan_links(plan)  # which link each axis crosses, seconds per step
# [end]


def us(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f}"


if __name__ == "__main__":
    print("Links (assumed: a CPU machine cannot measure them)")
    for name, link in LINKS.items():
        print(
            f"  {name:<8} {link.bandwidth / 1e9:5.0f} GB/s per direction",
            end="",
        )
        print(f", alpha {link.alpha * 1e6:g} us per step")
        pad = " " * 11
        print(
            textwrap.fill(
                link.source, 77, initial_indent=pad, subsequent_indent=pad
            )
        )

    samples, fit = measure_and_fit()
    print("\nMeasured on this machine: gloo, 2 processes (microseconds)")
    print(f"  {'bytes n':>9} {'measured':>9} {'model':>9} {'error':>7}")
    rows = list(zip(samples, fit.predicted, fit.relative_errors, strict=True))
    for s, p, e in rows:
        if s.collective == "all_reduce":
            print(f"  {s.nbytes:>9} {us(s.seconds)} {us(p)} {e:>+7.0%}")
    print("  median |error| per collective over the 10 sizes:")
    for c in COLLECTIVES:
        errs = sorted(abs(e) for s, _, e in rows if s.collective == c)
        print(f"    {c:<15} {(errs[4] + errs[5]) / 2:>5.0%}")
    print(f"  fit: alpha = {fit.alpha * 1e6:.1f} us per step,", end=" ")
    print(f"1/beta = {fit.bandwidth / 1e9:.2f} GB/s")
    print(f"  median |error| {fit.median_abs_error:.0%},", end=" ")
    print(f"max {fit.max_abs_error:.0%}")
    ar = collective_terms("all_reduce", 2)
    share = ar.steps * fit.alpha / ar.time(16, alpha=fit.alpha, beta=fit.beta)
    print(f"  a 16-byte all-reduce here is {share:.2%} latency")

    print("\nLab 07's plan on the cluster: one step, no overlap")
    for a in axes:
        sent = a.traffic.bytes_sent / 1e9
        print(f"  {a.traffic.axis}: group of {a.traffic.group_size}", end="")
        print(f" spans {a.nodes_spanned} node(s) -> {a.link:<8}", end="")
        print(f" {sent:8.2f} GB sent {a.seconds * 1e3:8.1f} ms")

    print(f"\nA {n / 1e9:g} GB all-reduce over {N} ranks on the network")
    print(f"  time {t_net * 1e3:.1f} ms = {ring.steps} x alpha", end="")
    print(f" + {ring.volume:g} n / bandwidth")
    print(f"  algorithm bandwidth n / T   = {algbw / 1e9:6.2f} GB/s")
    print(f"  bus bandwidth   v n / T     = {busbw / 1e9:6.2f} GB/s", end="")
    print(f" (link: {NET.bandwidth / 1e9:g} GB/s)")
    print(f"  latency = bandwidth term at n = {crossover / 1e6:.2f} MB")
    for size in (64 * 1024, 25 * 1024**2, n):
        t = collective_time(
            "all_reduce", size, N, alpha=NET.alpha, beta=NET.beta
        )
        tree = collective_time(
            "all_reduce",
            size,
            N,
            alpha=NET.alpha,
            beta=NET.beta,
            algorithm="tree",
        )
        lat = ring.steps * NET.alpha / t
        print(
            f"  n = {size:>13,.0f} B: ring {us(t)} us ({lat:4.0%} latency),",
            end="",
        )
        print(f" tree {us(tree)} us")
