"""Group offloading: the groups, the order of the moves, the bytes, and the modelled stream timeline."""

import itertools

import pytest
import torch
from torch import nn

from infralens.memory import GroupOffload, OffloadEvent, offload_timeline, stored_bytes
from infralens.nets import TinyDiT


class Net(nn.Module):
    def __init__(self, n=5):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(n))
        self.head = nn.Linear(8, 2)
        self.table = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        x = self.embed(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x) + self.table.sum()


def test_groups_bytes_and_order():
    net = Net()
    off = GroupOffload(net, num_blocks_per_group=2)
    assert off.peak_resident_bytes() == 0  # nothing has run: nothing was ever on the device
    sizes = off.group_bytes()
    block = (64 + 8) * 4
    assert sizes == {"blocks_0_1": 2 * block, "blocks_2_3": 2 * block, "blocks_4_4": block,
                     "top-level": (32 + 8 + 16 + 2 + 3) * 4}  # fmt: skip
    assert sum(sizes.values()) == sum(stored_bytes(net).values())
    net(torch.randn(1, 4))
    assert [(e.action, e.name) for e in off.events] == [
        ("onload", "top-level"), ("onload", "blocks_0_1"), ("compute", "blocks.0"), ("compute", "blocks.1"),
        ("offload", "blocks_0_1"), ("onload", "blocks_2_3"), ("compute", "blocks.2"), ("compute", "blocks.3"),
        ("offload", "blocks_2_3"), ("onload", "blocks_4_4"), ("compute", "blocks.4"), ("offload", "blocks_4_4"),
        ("offload", "top-level"),
    ]  # fmt: skip
    assert off.peak_resident_bytes() == sizes["top-level"] + 2 * block
    moved = sum(e.nbytes for e in off.events if e.action != "compute")
    assert moved == 2 * sum(sizes.values())  # every group on and off once per call
    assert sum(e.nbytes for e in off.events) == moved  # a compute event moves no bytes
    off.remove()
    net(torch.randn(1, 4))
    assert len(off.events) == 13


def test_every_sequential_child_is_grouped_too():
    dit = TinyDiT(latent_channels=4, text_dim=8, dim=16, num_layers=3)
    off = GroupOffload(dit, num_blocks_per_group=2)
    names = [n for n, _ in off.groups]
    assert names == ["time_embedding_0_1", "time_embedding_2_2", "text_embedding_0_1", "text_embedding_2_2",
                     "blocks_0_1", "blocks_2_2", "top-level"]  # fmt: skip
    out = dit(torch.randn(1, 4, 8, 8), torch.tensor([500.0]), torch.randn(1, 3, 8))
    assert out.shape == (1, 4, 8, 8) and isinstance(off.events[0], OffloadEvent)


def simulate(c, t, prefetch):
    """An event simulation: a copy engine and a compute engine, each doing one thing at a time."""
    copy_done, compute_done, waits = [], 0.0, []
    copy_free = 0.0
    for i in range(len(c)):
        start = copy_free if prefetch else compute_done  # serial: copy only after the last compute
        if prefetch and i > 0:
            start = max(copy_free, compute_done - c[i - 1])  # issued when group i-1 starts computing
        copy_free = start + t[i]
        copy_done.append(copy_free)
        begin = max(compute_done, copy_free)
        waits.append(begin - compute_done)
        compute_done = begin + c[i]
    return compute_done, waits


@pytest.mark.parametrize("prefetch", [False, True])
def test_timeline_against_an_event_simulation(prefetch):
    for c, t in itertools.product([[1.0, 2.0, 0.5, 3.0], [0.1] * 5], [[0.5, 0.5, 4.0, 1.0], [0.3] * 5]):
        if len(c) != len(t):
            continue
        total, waits = offload_timeline(c, t, prefetch=prefetch)
        sim_total, sim_waits = simulate(c, t, prefetch)
        assert total == pytest.approx(sim_total) and list(waits) == pytest.approx(sim_waits)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: GroupOffload("net", num_blocks_per_group=1), ["model must be an nn.Module"]),
        (lambda: GroupOffload(Net(), num_blocks_per_group=0), ["num_blocks_per_group must be >= 1"]),
        (lambda: GroupOffload(nn.Linear(2, 2), num_blocks_per_group=1), ["no nn.ModuleList or nn.Sequential"]),
        (lambda: offload_timeline([1.0], [1.0, 2.0], prefetch=True), ["one value per group", "got 1 and 2"]),
        (lambda: offload_timeline([], [], prefetch=True), ["one value per group"]),
        (lambda: offload_timeline([-1.0], [1.0], prefetch=False), ["compute_s must be seconds >= 0"]),
    ],
)
def test_errors(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for w in words:
        assert w in str(err.value)


def test_a_group_may_take_no_time():
    # zero seconds is a valid measurement (an empty group, a copy already done)
    assert offload_timeline([0.0, 1.0], [0.0, 0.0], prefetch=True) == (1.0, (0.0, 0.0))
    with pytest.raises(ValueError, match="transfer_s must be seconds >= 0"):
        offload_timeline([1.0], [-0.5], prefetch=False)
