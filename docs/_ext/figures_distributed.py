"""Figures of the distributed track: pipeline timelines from the simulator, the ring all-reduce step by step."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

from infralens.distributed import ring_allreduce_schedule, simulate_pipeline

PIPELINE = (4, 8)  # stages, micro-batches of the drawn timelines
RING_RANKS = 4
FORWARD, BACKWARD, IDLE = "#4c72b0", "#dd8452", "#d9d9d9"


def pipeline_schedules_figure() -> plt.Figure:
    """GPipe and 1F1B timelines from ``simulate_pipeline``, the bubble (idle time) shaded."""
    p, m = PIPELINE
    fig, axes = plt.subplots(2, 1, figsize=(9, 4.2), constrained_layout=True, sharex=True)
    for ax, schedule in zip(axes, ("gpipe", "1f1b"), strict=True):
        t = simulate_pipeline(schedule, p, m)
        for stage in range(p):
            ax.add_patch(Rectangle((0, stage - 0.42), t.makespan, 0.84, color=IDLE, hatch="///", ec="white", lw=0))
        for op in t.ops:
            colour = FORWARD if op.kind == "F" else BACKWARD
            ax.add_patch(Rectangle((op.start, op.stage - 0.42), op.end - op.start, 0.84, color=colour, ec="white"))
            ax.text((op.start + op.end) / 2, op.stage, f"{op.kind}{op.microbatch}", ha="center", va="center",
                    fontsize=7, color="white")  # fmt: skip
        peaks = t.peak_activations()
        name = "GPipe" if schedule == "gpipe" else "1F1B"
        ax.set_title(
            f"{name}: bubble {t.bubble():.1%} of wall time, activations held per stage {peaks}",
            fontsize=9,
            loc="left",
        )
        ax.set_yticks(range(p), [f"stage {s}" for s in range(p)])
        ax.set_ylim(p - 0.5, -0.5)
        ax.set_xlim(0, t.makespan)
    axes[-1].set_xlabel(f"time (one unit per forward or backward of a micro-batch), p = {p}, m = {m}")
    handles = [Rectangle((0, 0), 1, 1, color=c, hatch=h) for c, h in ((FORWARD, ""), (BACKWARD, ""), (IDLE, "///"))]
    axes[0].legend(
        handles, ["forward", "backward", "idle (bubble)"], loc="lower right", bbox_to_anchor=(1, 1), fontsize=7, ncol=3
    )
    return fig


def ring_allreduce_figure() -> plt.Figure:
    """The ring all-reduce of ``ring_allreduce_schedule``: which chunks each rank holds, and how summed, per step."""
    n = RING_RANKS
    sends = ring_allreduce_schedule(n)
    steps = 2 * (n - 1)
    held = [[1] * n for _ in range(n)]  # held[rank][chunk]: how many ranks' values the copy sums
    fig, axes = plt.subplots(1, steps + 1, figsize=(9, 3.4), constrained_layout=True)
    cmap = plt.get_cmap("Greens")
    for step in range(steps + 1):
        ax = axes[step]
        for rank in range(n):
            for chunk in range(n):
                share = held[rank][chunk] / n
                ax.add_patch(Rectangle((rank, chunk), 0.9, 0.9, color=cmap(0.15 + 0.8 * share), ec="grey", lw=0.5))
                ax.text(rank + 0.45, chunk + 0.45, str(held[rank][chunk]), ha="center", va="center", fontsize=9)
        if step < steps:
            this = [s for s in sends if s.step == step]
            for s in this:  # the chunk each rank sends at this step, outlined
                ax.add_patch(Rectangle((s.src, s.chunk), 0.9, 0.9, fill=False, ec="black", lw=1.6))
                start, end = (s.src + 0.9, s.chunk + 0.45), (s.dst + (0 if s.dst > s.src else 0.9), s.chunk + 0.45)
                if s.dst > s.src:  # to the right neighbour
                    ax.add_patch(
                        FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color="black", lw=1.2)
                    )
                else:  # the wrap-around from the last rank to rank 0, drawn under the grid
                    wrap = dict(arrowstyle="-|>", color="black", lw=0.8, connectionstyle="arc3,rad=0.25")
                    ax.annotate("", xy=(0.45, -0.25), xytext=(n - 0.55, -0.25), arrowprops=wrap)
            phase = this[0].phase
            ax.set_title(f"step {step}\n{phase}", fontsize=9)
            received = {(s.dst, s.chunk): held[s.src][s.chunk] for s in this}
            for (dst, chunk), count in received.items():
                held[dst][chunk] = held[dst][chunk] + count if phase == "reduce-scatter" else count
        else:
            ax.set_title("done\nall summed", fontsize=9)
        ax.set_xlim(-0.2, n)
        ax.set_ylim(n, -0.9)
        ax.set_xticks([r + 0.45 for r in range(n)], [f"r{r}" for r in range(n)], fontsize=7)
        ax.set_yticks([c + 0.45 for c in range(n)], [f"chunk {c}" for c in range(n)] if step == 0 else [], fontsize=7)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(
        f"Ring all-reduce on {n} ranks (columns r0 to r{n - 1}): per step each rank sends its outlined chunk "
        "to the right;\nthe number is how many ranks' values that copy of the chunk already sums",
        fontsize=9,
    )
    return fig


FIGURES: dict[str, Callable[[], plt.Figure]] = {
    "pipeline_schedules": pipeline_schedules_figure,
    "ring_allreduce": ring_allreduce_figure,
}
