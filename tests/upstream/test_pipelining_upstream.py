"""torch.distributed.pipelining on real gloo processes: the order each schedule runs, and the whole model's numbers."""

import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
from torch.utils._python_dispatch import TorchDispatchMode

from infralens.distributed import pipeline_bubble, run_ranks, schedule_order, simulate_pipeline

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


def pipeline_facts(rank, world_size, schedule_name, microbatches=MICROBATCHES):
    model = whole(world_size)
    part = model[rank : rank + 1]  # stage `rank` holds layer `rank`
    stage = PipelineStage(part, rank, world_size, torch.device("cpu"))
    order, cached = [], []
    for kind, method in (("F", "forward_one_chunk"), ("B", "backward_one_chunk")):
        run = getattr(stage, method)

        def recorded(chunk, *args, _run=run, _kind=kind, **kwargs):
            order.append((_kind, chunk))  # the micro-batch index is the first argument of both
            out = _run(chunk, *args, **kwargs)
            cached.append(len(stage.fwd_cache))  # micro-batches whose forward state the stage still holds
            return out

        setattr(stage, method, recorded)
    loss_fn = nn.MSELoss()
    cls = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[schedule_name]
    schedule = cls(stage, n_microbatches=microbatches, loss_fn=loss_fn)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2 * microbatches, 8, generator=g), torch.randn(2 * microbatches, 8, generator=g)
    losses = []
    if rank == 0:
        schedule.step(x)
    elif rank == world_size - 1:
        schedule.step(target=y, losses=losses)
    else:
        schedule.step()
    ref = whole(world_size)
    chunks = zip(x.chunk(microbatches), y.chunk(microbatches), strict=True)
    ref_loss = sum(loss_fn(ref(xm), ym) for xm, ym in chunks) / microbatches  # the mean of micro-batch losses
    ref_loss.backward()
    grad_err = max(
        (p.grad - q.grad).abs().max().item() for p, q in zip(part.parameters(), ref[rank].parameters(), strict=True)
    )
    return {
        "order": order,
        "peak_held": max(cached),
        "held_at_end": len(stage.fwd_cache),
        "losses": [v.item() for v in losses],
        "ref_loss": ref_loss.item(),
        "grad_err": grad_err,
    }


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


@pytest.fixture(scope="module")
def eight_microbatches():
    """Four stages, eight micro-batches: the case where GPipe's memory and 1F1B's part ways."""
    return {s: run_ranks(f"{HERE}:pipeline_facts", 4, args=(s, 8), timeout=180) for s in ("gpipe", "1f1b")}


def test_at_eight_micro_batches_gpipe_holds_all_of_them_and_1f1b_holds_p_minus_s(eight_microbatches):
    peaks = {s: [f["peak_held"] for f in facts] for s, facts in eight_microbatches.items()}
    assert peaks == {"gpipe": [8, 8, 8, 8], "1f1b": [4, 3, 2, 1]}  # measured in torch's stage.fwd_cache
    for s, facts in eight_microbatches.items():
        assert peaks[s] == simulate_pipeline(s, 4, 8).peak_activations()  # the simulator's count
        assert [f["held_at_end"] for f in facts] == [0, 0, 0, 0]  # every forward's state freed by its backward
        assert all(f["grad_err"] < 1e-6 for f in facts)


def test_at_eight_micro_batches_both_schedules_run_the_simulators_order_so_the_bubble_is_the_same(eight_microbatches):
    for s, facts in eight_microbatches.items():
        assert [f["order"] for f in facts] == schedule_order(s, 4, 8)
    gpipe, one_f_one_b = (simulate_pipeline(s, 4, 8) for s in ("gpipe", "1f1b"))
    assert gpipe.makespan == one_f_one_b.makespan == 2 * (8 + 4 - 1)  # slots of one F or one B
    assert gpipe.bubble() == pytest.approx(one_f_one_b.bubble()) == pytest.approx(pipeline_bubble(4, 8))
    assert pipeline_bubble(4, 8) == pytest.approx(3 / 11)  # (p - 1) / (m + p - 1)


class CollectiveCounts(TorchDispatchMode):
    """Counts the c10d collectives dispatched inside it (CommDebugMode's module tracker trips on pipeline stages)."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func.overloadpacket).startswith("c10d."):
            self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def fsdp_stage_facts(rank, world_size, microbatches, reshard_after_forward):
    """One pipeline stage whose two layers are FSDP2 (ZeRO-3) units sharded over both ranks, one step."""
    mesh = init_device_mesh("cpu", (1, world_size), mesh_dim_names=("pp", "dp"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
    for unit in (model[0], model[2], model):
        fully_shard(unit, mesh=mesh["dp"], reshard_after_forward=reshard_after_forward)
    stage = PipelineStage(model, 0, 1, torch.device("cpu"), group=mesh["pp"].get_group())
    schedule = Schedule1F1B(stage, n_microbatches=microbatches, loss_fn=nn.MSELoss())
    g = torch.Generator().manual_seed(rank)
    x, y = torch.randn(2 * microbatches, 8, generator=g), torch.randn(2 * microbatches, 8, generator=g)
    counter = CollectiveCounts()
    with warnings.catch_warnings(), counter:
        warnings.simplefilter("ignore")  # FSDP2's note that the root returned a view
        schedule.step(x, target=y)
    return dict(counter.counts)


@pytest.fixture(scope="module")
def fsdp_stage():
    return {
        (m, raf): run_ranks(f"{HERE}:fsdp_stage_facts", 2, args=(m, raf), timeout=180)[0]
        for m in (1, 4)
        for raf in (True, False)
    }


def test_torch_pipelining_reduces_fsdp_gradients_once_per_step_and_gathers_per_micro_batch_only_if_resharding(
    fsdp_stage,
):
    gathers = {k: c["c10d._allgather_base_"] for k, c in fsdp_stage.items()}
    scatters = {k: c["c10d._reduce_scatter_base_"] for k, c in fsdp_stage.items()}
    assert set(scatters.values()) == {2}  # one reduce-scatter per unit per step, however many micro-batches
    assert gathers[(4, False)] == gathers[(1, False)]  # weights kept whole for the step: gathered once per step
    assert gathers[(4, True)] - gathers[(1, True)] == 3 * 2  # resharded after forward: each extra forward gathers
