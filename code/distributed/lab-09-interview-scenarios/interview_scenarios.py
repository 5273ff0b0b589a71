"""Lab 09 · Interview Scenarios. Run: python interview_scenarios.py

Four scenario cards (a model, a cluster, a goal), each answered with the
track's own calculators instead of keywords: which plan fits, what it
communicates, what that costs on the links, and what to measure to find
out whether the model of it was right. Each answer has five parts:
problem, mechanism, communication, cost, measurement.
"""

import dataclasses
import textwrap
from pathlib import Path

from infralens.distributed import (
    LINKS,
    bus_bandwidth,
    collective_time,
    expert_capacity,
    load_plan,
    pipeline_bubble,
    plan_links,
    rank_memory,
    ring_allreduce_bytes,
    zero_bytes_per_rank,
)

# [1] Setup / contract
NV, NET = LINKS["nvlink"], LINKS["network"]
GB, GIB = 1e9, 2**30
LAB07 = Path(__file__).resolve().parents[1] / "lab-07-3d-parallelism-plan"
PLAN70B = load_plan(LAB07 / "parallelism_plan.yaml")  # 70B on 64 GPUs


def on(link, op: str, nbytes: float, N: int) -> float:
    """Seconds of one collective of n bytes over N ranks (alpha-beta)."""
    return collective_time(op, nbytes, N, alpha=link.alpha, beta=link.beta)


# [2] Main transition
def card_7b_finetune() -> dict:
    """Full fine-tune of 7B with Adam on one node of 8 x 80 GB."""
    P, N = 7e9, 8  # parameters, ranks
    by_stage = {s: zero_bytes_per_rank(P, N, s) for s in range(4)}
    fits = [s for s, b in by_stage.items() if b < 80 * GIB * 0.6]
    grads = 2 * P  # bf16 gradients, bytes
    ddp = ring_allreduce_bytes(grads, N)  # what ZeRO-1 and 2 send too
    t = on(NV, "all_reduce", grads, N)
    return {
        "problem": f"16 bytes/param x 7B = {by_stage[0] / GB:.0f} GB of "
        f"states per GPU under plain DDP: more than 80 GB.",
        "mechanism": "ZeRO shards states over the 8 ranks: "
        + ", ".join(f"stage {s} {b / GB:.2f} GB" for s, b in by_stage.items())
        + f". Lowest stage leaving 40% for activations: ZeRO-{fits[0]}.",
        "communication": f"ZeRO-1/2 reduce-scatter gradients and all-gather "
        f"weights: {ddp / GB:.1f} GB sent per rank per step, as DDP; "
        f"ZeRO-3 gathers weights twice: {1.5 * ddp / GB:.1f} GB.",
        "cost": f"on NVLink {t * 1e3:.0f} ms per step for ZeRO-1/2, "
        f"{1.5 * t * 1e3:.0f} ms for ZeRO-3, before overlap with backward.",
        "measurement": "peak allocated bytes per rank, step time with the "
        "collectives in a profiler trace, and the reduce-scatter's bus "
        "bandwidth against nccl-tests on the same node.",
    }


def card_70b_pretrain() -> dict:
    """Pretrain Llama-2-70B on 64 H100 80 GB (8 nodes x 8)."""
    B = PLAN70B.global_batch  # sequences per step, the same for every plan
    rows = ["tp pp dp   m   GiB  tp s  pp s  dp s  bubble"]
    for tp, pp, dp in [(8, 4, 2), (8, 1, 8), (4, 4, 4), (8, 8, 1)]:
        m = B // (dp * PLAN70B.micro_batch_size)  # micro-batches per pipe
        plan = dataclasses.replace(
            PLAN70B, tp=tp, pp=pp, dp=dp, micro_batches=m
        )
        gib = rank_memory(plan).total_bytes / GIB
        sec = [a.seconds for a in plan_links(plan)]  # tp, pp, dp
        bubble = pipeline_bubble(pp, m)
        rows.append(
            f"{tp:>2} {pp:>2} {dp:>2} {m:>3} {gib:>5.1f} "
            + " ".join(f"{x:>5.2f}" for x in sec)
            + f"  {bubble:>5.1%}"
        )
    p, m = PLAN70B.pp, PLAN70B.micro_batches
    return {
        "problem": f"{PLAN70B.model.params / GB:.1f}B parameters need "
        f"{16 * PLAN70B.model.params / GB:.0f} GB of states: no single "
        "node holds them, and TP beyond 8 leaves NVLink.",
        "mechanism": "TP 8 inside a node, PP across nodes, DP on the rest; "
        f"ZeRO-1 on DP. Candidates for {B} sequences per step:\n"
        + "\n".join(rows),
        "communication": "TP: 2 all-reduces per layer forward, 2 backward, "
        "2 again with recompute, over NVLink; PP: one activation per "
        "micro-batch and direction; DP: the gradients once per step.",
        "cost": f"bubble {pipeline_bubble(p, m):.2%} of wall time "
        f"(p={p}, m={m}) = {pipeline_bubble(p, m, relative_to='ideal'):.2%}"
        " over ideal compute; TP traffic dominates and sits on every "
        "layer's critical path unless async TP overlaps it (Lab 03).",
        "measurement": "per-axis time in a profiler trace (NCCL kernels "
        "by communicator), the bubble on the timeline, MFU against "
        "6 x parameters x tokens FLOPs, memory per stage (the first "
        "holds p micro-batches).",
    }


def card_moe_all_to_all() -> dict:
    """An MoE layer: 8 experts, top-2, 4,096 tokens per GPU, hidden 4,096."""
    T, E, k, D, N = 4096, 8, 2, 4096, 8  # N ranks
    cap = expert_capacity(T, E, top_k=k, capacity_factor=1.25)
    n = k * T * D * 2  # bytes a rank dispatches (bf16), before drops
    t_nv, t_net = on(NV, "all_to_all", n, N), on(NET, "all_to_all", n, N)
    return {
        "problem": f"each expert accepts {cap} tokens (factor 1.25); a "
        "popular expert drops the rest without an error.",
        "mechanism": "route top-2, dispatch rows to the expert's rank with "
        "all_to_all_single, run the local experts, combine back.",
        "communication": f"{n / 1e6:.0f} MB per rank per all-to-all, 2 per "
        f"layer forward and 2 backward; {(N - 1) / N:.1%} of it leaves "
        "the rank.",
        "cost": f"{t_nv * 1e3:.2f} ms per all-to-all inside a node, "
        f"{t_net * 1e3:.2f} ms across nodes: keep EP within NVLink.",
        "measurement": "dropped tokens per expert per step, the "
        "load-balancing loss, all-to-all time per layer in the trace.",
    }


def card_allreduce_drill() -> dict:
    """The drill: a 2 GB gradient, ring all-reduce, 8 ranks."""
    n, N = 2e9, 8  # bytes, ranks
    sent = ring_allreduce_bytes(n, N)
    t = on(NET, "all_reduce", n, N)
    algbw, busbw = bus_bandwidth("all_reduce", n, t, N)
    bucket = 25 * 2**20  # DDP's default bucket_cap_mb
    tb = on(NET, "all_reduce", bucket, N)
    return {
        "problem": "how long does the gradient all-reduce take, and is the "
        "network the bottleneck?",
        "mechanism": "ring: reduce-scatter then all-gather, 2(N-1) steps, "
        f"each rank sends 2(N-1)/N n = {sent / GB:.2f} GB.",
        "communication": f"{sent / GB:.2f} GB per rank, in 25 MiB buckets "
        f"of {tb * 1e6:.0f} us each on the network.",
        "cost": f"{t * 1e3:.1f} ms; algorithm bandwidth "
        f"{algbw / GB:.1f} GB/s, bus bandwidth {busbw / GB:.1f} GB/s of "
        f"the link's {NET.bandwidth / GB:.0f}.",
        "measurement": "nccl-tests all_reduce_perf busbw at this size "
        "and rank count; compare busbw, not algbw, with the link.",
    }


# [3] Interview hook
CARDS = [
    card_7b_finetune,
    card_70b_pretrain,
    card_moe_all_to_all,
    card_allreduce_drill,
]
PARTS = ("problem", "mechanism", "communication", "cost", "measurement")
# [end]


if __name__ == "__main__":
    for i, card in enumerate(CARDS, 1):
        answer = card()
        assert tuple(answer) == PARTS
        print(f"Card {i}: {card.__doc__}")
        for part in PARTS:
            lines = answer[part].split("\n")
            first = textwrap.fill(
                lines[0],
                77,
                initial_indent=f"  {part:<14}",
                subsequent_indent=" " * 16,
            )
            print(first)
            for line in lines[1:]:
                print(" " * 18 + line)
        print()
