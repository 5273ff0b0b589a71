"""torch's DistributedDataParallel on real gloo processes: buckets, averaging, no_sync, unused parameters.

Each statement the distributed track's Lab 01 makes about DDP is one test here,
run on two processes through :func:`infralens.distributed.run_ranks`.
"""

import functools
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.nn.parallel.distributed import _DEFAULT_BUCKET_CAP_MB

from infralens.distributed import BytesSent, ddp_bucket_plan, run_ranks

pytestmark = pytest.mark.upstream

HERE = Path(__file__).resolve()


class Chain(nn.Module):
    """``count`` Linear(width, width) layers with tanh, run in ``order`` (default: the order they were registered in).

    Float32 gradients: 4,096-byte weights and 128-byte biases at width 32; 1 MiB and 2 KiB at width 512.
    """

    def __init__(self, width: int = 32, count: int = 4, order: tuple[int, ...] | None = None):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(count))
        self.order = tuple(range(count)) if order is None else order

    def forward(self, x):
        for i in self.order:
            x = torch.tanh(self.layers[i](x))
        return x


SHUFFLED = (2, 0, 3, 1)  # the forward uses the four layers in this order, not the registration order
Four = Chain
Shuffled = functools.partial(Chain, order=SHUFFLED)
Big = functools.partial(Chain, 512, 3)


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.used(x)


def recording_hook(state, bucket):
    state["calls"].append(
        (state["step"], bucket.index(), [state["names"][id(p)] for p in bucket.parameters()], bucket.buffer().numel())
    )
    buffer = bucket.buffer().div_(dist.get_world_size())  # what the default hook does: average
    return dist.all_reduce(buffer, async_op=True).get_future().then(lambda f: f.value()[0])


def data(rank=None):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 32, generator=g), torch.randn(8, 32, generator=g)
    return (x, y) if rank is None else (x[4 * rank : 4 * rank + 4], y[4 * rank : 4 * rank + 4])


def ddp_facts(rank, world_size):
    out = {}
    torch.manual_seed(rank)  # different initial weights on each rank...
    model = Four()
    ddp = DistributedDataParallel(model, bucket_cap_mb=0.004)  # 4,194 bytes: one layer's weight and bias fill a bucket
    ref = Four()
    ref.load_state_dict(model.state_dict())  # ...until DDP's constructor broadcast rank 0's
    out["weights"] = [p.detach().clone() for p in model.parameters()]
    state = {"names": {id(p): n for n, p in model.named_parameters()}, "calls": [], "step": 0}
    ddp.register_comm_hook(state, recording_hook)
    x, y = data(rank)
    out["forward_wire"] = []
    for step in range(3):
        state["step"] = step
        ddp.zero_grad()
        with BytesSent() as wire:
            prediction = ddp(x)
        out["forward_wire"].append(wire.bytes)
        nn.functional.mse_loss(prediction, y).backward()
    out["calls"] = [c for c in state["calls"] if c[0] < 2]
    ref.zero_grad()
    nn.functional.mse_loss(ref(data()[0]), data()[1]).backward()  # one process, the whole batch
    plain = Four()  # DDP without any hook: its built-in reduction
    plain.load_state_dict(ref.state_dict())
    plain_ddp = DistributedDataParallel(plain)  # kept alive: its reducer's hooks die with it
    nn.functional.mse_loss(plain_ddp(x), y).backward()
    out["default_grad_err"] = max(
        (p.grad - q.grad).abs().max().item() for p, q in zip(plain.parameters(), ref.parameters(), strict=True)
    )
    out["grad_err"] = max(
        (p.grad - q.grad).abs().max().item() for p, q in zip(model.parameters(), ref.parameters(), strict=True)
    )
    # no_sync: accumulate two micro-batches locally, reduce once
    state["calls"], state["step"] = [], 2
    ddp.zero_grad()
    with ddp.no_sync():
        nn.functional.mse_loss(ddp(x[:2]), y[:2]).backward()
    out["calls_inside_no_sync"] = len(state["calls"])
    nn.functional.mse_loss(ddp(x[2:]), y[2:]).backward()
    out["calls_after_no_sync"] = len(state["calls"])
    ref.zero_grad()
    xs, ys = data()
    for lo in (0, 2):  # the same two micro-batches of every rank, on one process
        rows = [r * 4 + lo + j for r in range(world_size) for j in range(2)]
        nn.functional.mse_loss(ref(xs[rows]), ys[rows]).backward()
    out["no_sync_err"] = max(
        (p.grad - q.grad).abs().max().item() for p, q in zip(model.parameters(), ref.parameters(), strict=True)
    )
    return out


def ready_order(make, x):
    """Names of the parameters in the order their gradients are accumulated, on a plain module (no DDP)."""
    torch.manual_seed(0)
    model, order = make(), []
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(lambda _p, name=name: order.append((name, _p.numel() * 4)))
    model(x).sum().backward()
    return order


def bucket_facts(rank, world_size):
    """The buckets DDP all-reduces in its second step (after the rebuild), for several models and caps."""
    out = {}
    cases = [("shuffled", Shuffled, 32, 0.004), ("shuffled", Shuffled, 32, 0.006), ("big", Big, 512, None)]
    for label, make, dim, cap_mb in cases:
        torch.manual_seed(0)
        model = make()
        ddp = DistributedDataParallel(model, bucket_cap_mb=cap_mb)
        state = {"names": {id(p): n for n, p in model.named_parameters()}, "calls": [], "step": 0}
        ddp.register_comm_hook(state, recording_hook)
        x = torch.randn(4, dim, generator=torch.Generator().manual_seed(rank))
        for step in range(2):
            state["step"] = step
            ddp(x).sum().backward()
        out[(label, cap_mb)] = {
            "buckets": [c[2] for c in state["calls"] if c[0] == 1],
            "ready": ready_order(make, x),
        }
    return out


def recorded_steps(model, ddp, batch, summary) -> list[tuple]:
    """Two DDP steps with the recording comm hook: ``("ok", summary(state))`` per step, or DDP's error."""
    state = {"names": {id(p): n for n, p in model.named_parameters()}, "calls": [], "step": 0}
    ddp.register_comm_hook(state, recording_hook)
    steps = []
    for step in range(2):
        state["step"] = step
        try:
            ddp(batch).sum().backward()
        except RuntimeError as exc:
            steps.append(("error", str(exc)))
            break
        steps.append(("ok", *summary(state, step)))
    return steps


def unused_facts(rank, world_size):
    out = {}
    for find in (False, True):
        torch.manual_seed(0)
        model = Unused()
        ddp = DistributedDataParallel(model, find_unused_parameters=find)
        summary = lambda state, step, m=model: (len(state["calls"]), m.used.weight.grad.clone())  # noqa: E731
        out[find] = recorded_steps(model, ddp, torch.full((2, 4), float(rank + 1)), summary)
    return out


def frozen_facts(rank, world_size):
    """Layer 0 frozen before DDP wraps the model, or after: which parameters the reducer knows, what the steps do."""
    out = {}
    for when in ("before", "after"):
        torch.manual_seed(0)
        model = Four()
        if when == "before":
            model.layers[0].requires_grad_(False)
        ddp = DistributedDataParallel(model, bucket_cap_mb=0.004)
        if when == "after":
            model.layers[0].requires_grad_(False)
        reduced = lambda state, step: (sorted({n for c in state["calls"] if c[0] == step for n in c[2]}),)  # noqa: E731
        out[when] = recorded_steps(model, ddp, data(rank)[0], reduced)
    return out


@pytest.fixture(scope="module")
def frozen():
    return run_ranks(f"{HERE}:frozen_facts", 2, timeout=120)


def test_a_parameter_frozen_before_wrapping_is_left_out_but_one_frozen_after_stalls_its_bucket(frozen):
    for f in frozen:
        trained = sorted(f"layers.{i}.{k}" for i in (1, 2, 3) for k in ("bias", "weight"))
        assert f["before"] == [("ok", trained), ("ok", trained)]  # layer 0 is in no bucket, nothing waits for it
        first, second = f["after"]
        assert first == ("ok", [])  # the first iteration's one bucket waits for layer 0 and never fires
        assert second[0] == "error"
        assert second[1].startswith("Expected to have finished reduction in the prior iteration")


@pytest.fixture(scope="module")
def facts():
    return run_ranks(f"{HERE}:ddp_facts", 2, timeout=120)


def test_the_constructor_broadcasts_rank_0s_weights(facts):
    assert all(torch.equal(a, b) for a, b in zip(facts[0]["weights"], facts[1]["weights"], strict=True))


def test_first_iteration_one_bucket_then_rebuilt_in_gradient_order_by_bucket_cap(facts):
    first = [c for c in facts[0]["calls"] if c[0] == 0]
    assert len(first) == 1 and len(first[0][2]) == 8  # every parameter in one bucket
    second = [c for c in facts[0]["calls"] if c[0] == 1]
    assert [c[2] for c in second] == [[f"layers.{i}.bias", f"layers.{i}.weight"] for i in (3, 2, 1, 0)]
    assert [c[3] for c in second] == [32 * 32 + 32] * 4  # elements per bucket
    assert facts[0]["calls"] == facts[1]["calls"]  # every rank reduces the same buckets in the same order


def test_ddp_averages_so_gradients_equal_the_full_batch_gradient(facts):
    assert all(f["grad_err"] < 1e-6 for f in facts)  # through the recording hook, which divides by N
    assert all(f["default_grad_err"] < 1e-6 for f in facts)  # and DDP's own reduction, without a hook


def test_the_buckets_are_rebuilt_in_the_second_forward_the_only_one_that_sends(facts):
    for f in facts:  # no buffers to broadcast: only the rebuild's exchange of bucket assignments
        first, second, third = f["forward_wire"]
        assert first == third == 0 < second


def test_no_sync_skips_the_all_reduce_and_the_next_backward_reduces_the_sum(facts):
    assert [f["calls_inside_no_sync"] for f in facts] == [0, 0]
    assert [f["calls_after_no_sync"] for f in facts] == [4, 4]
    assert all(f["no_sync_err"] < 1e-6 for f in facts)


@pytest.fixture(scope="module")
def buckets():
    return run_ranks(f"{HERE}:bucket_facts", 2, timeout=120)


def plan(ready, cap_bytes, first_cap_bytes=None):
    """The library's bucket plan for a gradient-ready order, as lists of parameter names."""
    names, sizes = zip(*ready, strict=True)
    groups = ddp_bucket_plan(sizes, cap_bytes, first_bucket_cap_bytes=first_cap_bytes)
    return [[names[i] for i in group] for group in groups]


def layers(bucket_names):
    return [
        sorted({int(n.split(".")[1]) for n in names}, key=[int(n.split(".")[1]) for n in names].index)
        for names in bucket_names
    ]


def test_shuffled_forward_buckets_follow_the_gradient_order_not_the_registration_order(buckets):
    for cap_mb, by_layer in ((0.004, [[1], [3], [0], [2]]), (0.006, [[1, 3], [0, 2]])):
        facts = buckets[0][("shuffled", cap_mb)]
        ready_layers = [int(n.split(".")[1]) for n, _ in facts["ready"]][::2]
        assert ready_layers == list(reversed(SHUFFLED))  # backward readies them in reverse order of use
        assert layers(facts["buckets"]) == by_layer  # what DDP's reducer all-reduced, in launch order
        assert facts["buckets"] == plan(facts["ready"], int(cap_mb * 2**20))  # the library's plan, name by name
        registered = [(f"layers.{i}.{k}", n) for i in (3, 2, 1, 0) for k, n in (("bias", 128), ("weight", 4096))]
        assert facts["buckets"] != plan(registered, int(cap_mb * 2**20))  # reverse registration order is wrong here
        assert buckets[1][("shuffled", cap_mb)]["buckets"] == facts["buckets"]  # both ranks agree


def test_the_default_cap_has_a_first_bucket_of_1_mib_then_25_mib(buckets):
    facts = buckets[0][("big", None)]
    assert layers(facts["buckets"]) == [[2], [1, 0]]  # the last layer alone, then the rest together
    first, cap = torch.distributed._DEFAULT_FIRST_BUCKET_BYTES, 25 * 2**20
    assert (first, cap) == (2**20, int(_DEFAULT_BUCKET_CAP_MB * 2**20))
    assert facts["buckets"] == plan(facts["ready"], cap, first)
    assert facts["buckets"] != plan(facts["ready"], cap)  # one cap for all would make one bucket


@pytest.fixture(scope="module")
def unused():
    return run_ranks(f"{HERE}:unused_facts", 2, timeout=120)


def test_an_unused_parameter_stalls_its_bucket_and_the_next_forward_raises(unused):
    first, second = unused[0][False]
    assert first[:2] == ("ok", 0)  # backward finished, but no bucket was all-reduced
    assert not torch.equal(unused[0][False][0][2], unused[1][False][0][2])  # gradients still differ by rank
    assert second[0] == "error"
    assert second[1].startswith("Expected to have finished reduction in the prior iteration before starting a new one")
    assert "find_unused_parameters=True" in second[1]


def test_find_unused_parameters_marks_them_ready(unused):
    steps = unused[0][True]
    assert [s[:2] for s in steps] == [("ok", 1), ("ok", 2)]
    assert torch.equal(steps[0][2], unused[1][True][0][2])  # reduced: the same on both ranks
