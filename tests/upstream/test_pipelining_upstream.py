"""torch.distributed.pipelining on real gloo processes: the order each schedule runs, and the whole model's numbers."""

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

from infralens.distributed import run_ranks, schedule_order

pytestmark = pytest.mark.upstream

HERE = Path(__file__).resolve()
MICROBATCHES = 4


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return torch.tanh(self.fc(x))


def whole(layers: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*(Block() for _ in range(layers)))


def pipeline_facts(rank, world_size, schedule_name):
    model = whole(world_size)
    part = model[rank : rank + 1]  # stage `rank` holds layer `rank`
    stage = PipelineStage(part, rank, world_size, torch.device("cpu"))
    order = []
    for kind, method in (("F", "forward_one_chunk"), ("B", "backward_one_chunk")):
        run = getattr(stage, method)

        def recorded(chunk, *args, _run=run, _kind=kind, **kwargs):
            order.append((_kind, chunk))  # the micro-batch index is the first argument of both
            return _run(chunk, *args, **kwargs)

        setattr(stage, method, recorded)
    loss_fn = nn.MSELoss()
    cls = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[schedule_name]
    schedule = cls(stage, n_microbatches=MICROBATCHES, loss_fn=loss_fn)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 8, generator=g), torch.randn(8, 8, generator=g)
    losses = []
    if rank == 0:
        schedule.step(x)
    elif rank == world_size - 1:
        schedule.step(target=y, losses=losses)
    else:
        schedule.step()
    ref = whole(world_size)
    chunks = zip(x.chunk(MICROBATCHES), y.chunk(MICROBATCHES), strict=True)
    ref_loss = sum(loss_fn(ref(xm), ym) for xm, ym in chunks) / MICROBATCHES  # the mean of micro-batch losses
    ref_loss.backward()
    grad_err = max(
        (p.grad - q.grad).abs().max().item() for p, q in zip(part.parameters(), ref[rank].parameters(), strict=True)
    )
    return {"order": order, "losses": [v.item() for v in losses], "ref_loss": ref_loss.item(), "grad_err": grad_err}


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("world_size", [2, 4])
def test_each_stage_runs_the_simulators_order_and_reproduces_the_whole_model(schedule, world_size):
    facts = run_ranks(f"{HERE}:pipeline_facts", world_size, args=(schedule,), timeout=180)
    expected = schedule_order(schedule, world_size, MICROBATCHES)
    for rank, f in enumerate(facts):
        assert f["order"] == expected[rank]
        assert f["grad_err"] < 1e-6
    last = facts[-1]
    assert len(last["losses"]) == MICROBATCHES
    assert sum(last["losses"]) / MICROBATCHES == pytest.approx(last["ref_loss"], abs=1e-6)
