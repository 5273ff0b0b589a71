"""Lab 04 · Pipeline Schedule Reading. Run: python pipeline_schedule.py

p stages each hold a slice of the layers; a batch is cut into m micro-
batches that flow through them. The simulator places every forward (F) and
backward (B) in time: GPipe runs all forwards then all backwards, 1F1B
starts backwards as early as it can. Both idle for p - 1 slots of m + p - 1
(the bubble); they differ in how many micro-batches' activations a stage
holds. Then torch.distributed.pipelining runs two stages on two processes.
"""

import torch
from torch import nn
from torch.distributed.pipelining import (
    PipelineStage,
    Schedule1F1B,
    ScheduleGPipe,
)

from infralens.distributed import (
    PIPELINE_SCHEDULES,
    pipeline_bubble,
    run_ranks,
    simulate_pipeline,
)

MICRO = 4  # micro-batches of the torch run


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):  # (B, 8) -> (B, 8)
        return torch.tanh(self.fc(x))


def whole():
    torch.manual_seed(0)
    return nn.Sequential(Block(), Block(), Block(), Block())


# [1] Setup / contract
P, M = 4, 8  # stages and micro-batches of the printed timelines
TIMELINES = {s: simulate_pipeline(s, P, M) for s in PIPELINE_SCHEDULES}


def stage_worker(rank, world_size):
    return {s: run_schedule(rank, world_size, s) for s in PIPELINE_SCHEDULES}


def run_schedule(rank, world_size, schedule):
    # [2] Main transition
    model = whole()
    part = model[2 * rank : 2 * rank + 2]  # stage `rank`: two blocks
    stage = PipelineStage(part, rank, world_size, torch.device("cpu"))
    order = []  # what this stage runs, in order: ("F", 0), ("B", 0), ...
    for kind, name in (
        ("F", "forward_one_chunk"),
        ("B", "backward_one_chunk"),
    ):
        run = getattr(stage, name)

        def logged(i, *args, _run=run, _kind=kind, **kwargs):
            order.append((_kind, i))  # i: the micro-batch
            return _run(i, *args, **kwargs)

        setattr(stage, name, logged)
    loss_fn = nn.MSELoss()
    cls = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[schedule]
    pipe = cls(stage, n_microbatches=MICRO, loss_fn=loss_fn)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 8, generator=g), torch.randn(8, 8, generator=g)
    losses = []  # filled on the last stage, one per micro-batch
    if rank == 0:
        pipe.step(x)  # the first stage feeds the batch in
    else:
        pipe.step(target=y, losses=losses)  # the last computes the loss
    alone = whole()  # one process, the same micro-batches
    pairs = zip(x.chunk(MICRO), y.chunk(MICRO), strict=True)
    loss = sum(loss_fn(alone(xm), ym) for xm, ym in pairs) / MICRO
    loss.backward()
    twin = alone[2 * rank : 2 * rank + 2]  # the same two blocks, unsplit
    mine = zip(part.parameters(), twin.parameters(), strict=True)
    gap = max((p.grad - q.grad).abs().max().item() for p, q in mine)
    return {
        "order": order,
        "loss": sum(v.item() for v in losses) / MICRO if losses else None,
        "alone": loss.item(),
        "grad_gap": gap,
    }


# [3] Interview hook
WALL = pipeline_bubble(4, 16)  # (p - 1) / (m + p - 1): share of wall time
IDEAL = pipeline_bubble(4, 16, relative_to="ideal")  # (p - 1) / m
MEMORY = {  # m -> (bubble, activations held by stage 0: GPipe, 1F1B)
    m: (
        pipeline_bubble(4, m),
        simulate_pipeline("gpipe", 4, m).peak_activations()[0],
        simulate_pipeline("1f1b", 4, m).peak_activations()[0],
    )
    for m in (4, 8, 16, 32)
}
# [end]


def show(timeline):
    for stage, row in enumerate(timeline.grid()):
        print(f"  stage {stage} |" + "".join(f"{c or '.':>3}" for c in row))


if __name__ == "__main__":
    for name, timeline in TIMELINES.items():
        print(
            f"{name}, p={P} stages, m={M} micro-batches "
            f"(F and B one unit each; '.' is idle)"
        )
        show(timeline)
        peaks = timeline.peak_activations()
        print(
            f"  makespan {timeline.makespan:.0f} units, bubble "
            f"{timeline.bubble():.4f}, activations held per stage {peaks}"
        )
        print()
    print("The bubble at p=4, m=16, two conventions")
    sim = simulate_pipeline("1f1b", 4, 16)
    print(
        f"  idle / wall time  (p-1)/(m+p-1) = {WALL:.4f}   simulated "
        f"{sim.bubble():.4f}"
    )
    print(
        f"  idle / compute    (p-1)/m       = {IDEAL:.4f}   simulated "
        f"{sim.bubble(relative_to='ideal'):.4f}"
    )
    print("\nMore micro-batches: a smaller bubble, more memory for GPipe")
    print(f"  {'m':>3} {'bubble':>7} {'GPipe holds':>12} {'1F1B holds':>11}")
    for m, (bubble, gpipe, one) in MEMORY.items():
        print(f"  {m:>3} {bubble:>7.4f} {gpipe:>12} {one:>11}")

    print(
        "\ntorch.distributed.pipelining, 2 stages on 2 processes, "
        f"{MICRO} micro-batches"
    )
    ranks = run_ranks(stage_worker, 2)
    for schedule in PIPELINE_SCHEDULES:
        first, last = (r[schedule] for r in ranks)
        print(f"  {schedule}")
        for rank, r in enumerate((first, last)):
            ran = " ".join(f"{k}{i}" for k, i in r["order"])
            print(f"    stage {rank} ran: {ran}")
        print(
            f"    loss {last['loss']:.6f}, one process {last['alone']:.6f}; "
            f"max |grad diff| {max(first['grad_gap'], last['grad_gap']):.1e}"
        )
