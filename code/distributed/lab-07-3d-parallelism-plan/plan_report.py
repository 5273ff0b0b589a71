"""Lab 07 · 3D Parallelism Plan. Run: python plan_report.py

parallelism_plan.yaml splits a model over a cluster three ways: tensor
parallel (TP) inside each layer, pipeline parallel (PP) across layers, data
parallel (DP) across replicas. load_plan refuses plans that break a rule;
this report prints what the plan costs each rank in memory and traffic, and
where torch's DeviceMesh puts every rank, without starting 64 processes.
"""

import textwrap
from pathlib import Path

from infralens.distributed import (
    load_plan,
    mesh_layout,
    pipeline_bubble,
    rank_memory,
    ring_allreduce_bytes,
    step_traffic,
)

# [1] Setup / contract
PLAN = Path(__file__).resolve().parent / "parallelism_plan.yaml"
TEXT = PLAN.read_text()
plan = load_plan(PLAN)  # checked: every rule holds
m, c = plan.model, plan.cluster
assert plan.tp * plan.pp * plan.dp == c.nodes * c.gpus_per_node

# [2] Main transition
h, t = m.hidden_size, plan.tp
block = (m.layer_params - 2 * h) // t + 2 * h  # one layer's TP shard
mem = rank_memory(plan)  # the busiest rank: the first stage
act = plan.micro_batch_size * plan.seq_len * h * 2  # (b, s, h) in bf16
tp, pp, dp = step_traffic(plan)  # bytes per rank per step, each axis
assert tp.ops[0][2] == act  # a TP all-reduce moves a whole activation
assert dp.bytes_sent == ring_allreduce_bytes(mem.params * 2, plan.dp)
shape = {"pp": plan.pp, "dp": plan.dp, "tp": plan.tp}  # outermost first
layout = mesh_layout(shape)  # DeviceMesh groups from 64 fake ranks

# [3] Interview hook
EDITS = {  # each breaks one rule; the loader names it
    "multiplies to 32": [("dp: 2 ", "dp: 1 ")],
    "TP splits a KV head": [("kv_heads: 8 ", "kv_heads: 4 ")],
    "TP across two nodes (64 KV heads)": [
        ("tp: 8 ", "tp: 16"),
        ("dp: 2 ", "dp: 1 "),
        ("kv_heads: 8 ", "kv_heads: 64"),
    ],
    "8 stages of 60 layers": [
        ("pp: 4 ", "pp: 8 "),
        ("dp: 2 ", "dp: 1 "),
        ("layers: 80", "layers: 60"),
    ],
    "ZeRO-3 under a pipeline": [("zero_stage: 1", "zero_stage: 3")],
    "a misspelt key": [("micro_batches:", "micro_batchs:")],
}
# [end]


def refusal(edits) -> str:
    text = TEXT
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    try:
        load_plan(text)
    except ValueError as err:
        msg = str(err)
    else:
        msg = "accepted"
    pad = " " * 4
    return textwrap.fill(msg, 74, initial_indent=pad, subsequent_indent=pad)


def size(x: float) -> str:
    return f"{x / 1e9:8.2f} GB" if x >= 1e9 else f"{x / 1e6:8.2f} MB"


if __name__ == "__main__":
    print(f"{PLAN.name}: {m.name}, {m.params / 1e9:.2f}B parameters")
    print(f"  cluster  {c.nodes} nodes x {c.gpus_per_node} GPUs", end="")
    print(f" = {c.world_size} ranks, {c.gpu_memory_gib} GiB each")
    print(f"  plan     tp {plan.tp} x pp {plan.pp} x dp {plan.dp}", end="")
    print(f", ZeRO-{plan.zero_stage}, {plan.micro_batches} micro-batches")
    print(f"  global batch {plan.global_batch} sequences of {plan.seq_len}")

    print(f"\nMemory of the busiest rank (stage {mem.stage} of {plan.pp})")
    zero = f"ZeRO-{plan.zero_stage} (2+2+12/{plan.dp})"
    layers = f"{m.layers // plan.pp} layers + embedding shard"
    for label, value in [
        ("one layer's TP shard", f"{block:>15,} params"),
        (layers, f"{mem.params:>15,} params"),
        (f"states at {zero}", size(mem.state_bytes)),
        (f"activations ({mem.in_flight} live)", size(mem.activation_bytes)),
        ("total", f"{mem.total_bytes / 2**30:8.2f} GiB"),
    ]:
        print(f"  {label:<28} {value}")

    print("\nTraffic per rank per step")
    head = ("axis", "op", "group", "calls", "N", "sent")
    print("  {:<4} {:<10} {:>5} {:>6} {:>11} {:>11}".format(*head))
    for axis in (tp, pp, dp):
        for op, calls, n in axis.ops:
            print(f"  {axis.axis:<4} {op:<10} {axis.group_size:>5}", end="")
            print(f" {calls:>6} {size(n)} {size(axis.bytes_sent)}")
    wall = pipeline_bubble(plan.pp, plan.micro_batches)
    ideal = pipeline_bubble(plan.pp, plan.micro_batches, relative_to="ideal")
    print(f"  pipeline bubble: {wall:.2%} of wall time, {ideal:.2%} of ideal")

    print("\nDeviceMesh (pp, dp, tp) from torch's fake process group")
    for s in range(plan.pp):
        for d in range(plan.dp):
            ranks = layout.mesh[s, d].tolist()
            node = ranks[0] // c.gpus_per_node
            row = " ".join(f"{r:2d}" for r in ranks)
            print(f"  stage {s} replica {d}: [{row}]  node {node}")
    for name in ("tp", "dp", "pp"):
        span = layout.nodes_spanned(name, c.gpus_per_node)
        print(f"  rank 13's {name} group {layout.group_of(13, name)}", end="")
        print(f"  spans {span} node(s)")

    print("\nOne-line edits the loader refuses")
    for name, edits in EDITS.items():
        print(f"  {name}")
        print(refusal(edits))
