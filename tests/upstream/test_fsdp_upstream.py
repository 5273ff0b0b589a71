"""torch's FSDP2 (``fully_shard``) on two real gloo processes: what each rank holds, what one step sends.

The measured referent of :func:`infralens.distributed.zero_bytes_per_rank` at
stage 3: the bytes of the weights, gradients and Adam states a rank really holds.
"""

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor.debug import CommDebugMode

from infralens.distributed import BytesSent, run_ranks, zero_bytes_per_rank

pytestmark = pytest.mark.upstream

HERE = Path(__file__).resolve()


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.mid, self.down = nn.Linear(16, 64), nn.Linear(64, 64), nn.Linear(64, 8)

    def forward(self, x):
        return self.down(torch.relu(self.mid(torch.relu(self.up(x)))))


def build():
    torch.manual_seed(0)
    return MLP()


def local_bytes(tensors) -> int:
    return sum(t.to_local().numel() * t.to_local().element_size() for t in tensors)


class SavedBytes:
    """Bytes autograd saves for backward inside the block, weights left out (a leaf that requires grad)."""

    def __init__(self):
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t):
        if not (t.is_leaf and t.requires_grad):
            self.bytes += t.numel() * t.element_size()
        return t

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def fsdp_facts(rank, world_size):
    ref, model = build(), build()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 16, generator=g), torch.randn(8, 8, generator=g)
    mine = slice(4 * rank, 4 * rank + 4)
    with SavedBytes() as plain:
        nn.functional.mse_loss(ref(x[mine]), y[mine])  # forward only: what one process saves for this batch
    fully_shard(model.up)
    fully_shard(model.mid)
    fully_shard(model)  # the root unit holds `down`
    out = {
        "placements": {n: str(p.placements) for n, p in model.named_parameters()},
        "local_shapes": {n: tuple(p.to_local().shape) for n, p in model.named_parameters()},
        "param_bytes": local_bytes(model.parameters()),
        "plain_activations": plain.bytes,
    }
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    comm = CommDebugMode()
    with comm, BytesSent() as wire:
        with SavedBytes() as sharded:
            loss = nn.functional.mse_loss(model(x[mine]), y[mine])
        loss.backward()
    out["sharded_activations"] = sharded.bytes
    out["counts"] = {str(op): n for op, n in comm.get_comm_counts().items()}
    out["wire"] = wire.bytes
    out["grad_bytes"] = local_bytes(p.grad for p in model.parameters())
    opt.step()
    out["adam_bytes"] = sum(
        local_bytes([s["exp_avg"], s["exp_avg_sq"]]) for s in opt.state.values()
    )  # the step counter is one scalar per tensor: left out
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    nn.functional.mse_loss(ref(x), y).backward()  # one process, the whole batch
    ref_opt.step()
    every = build()
    for layer in (every.up, every.mid, every.down):
        fully_shard(layer)
    fully_shard(every)  # a root unit with no parameters of its own
    comm = CommDebugMode()
    with warnings.catch_warnings(record=True) as counted:
        warnings.simplefilter("always")
        with comm:
            nn.functional.mse_loss(every(x[mine]), y[mine]).backward()
    out["counts_every_layer"] = {str(op): n for op, n in comm.get_comm_counts().items()}
    with warnings.catch_warnings(record=True) as silent:
        warnings.simplefilter("always")
        nn.functional.mse_loss(every(x[mine]), y[mine]).backward()
    prefixes = ("FSDP2-wrapped module", "Full backward hook is firing")
    out["warnings"] = (sorted({p for w in counted for p in prefixes if str(w.message).startswith(p)}), len(silent))
    out["step_err"] = max(
        (p.full_tensor() - q).abs().max().item() for p, q in zip(model.parameters(), ref.parameters(), strict=True)
    )
    return out


@pytest.fixture(scope="module")
def facts():
    return run_ranks(f"{HERE}:fsdp_facts", 2, timeout=180)


def test_each_rank_holds_a_dim_0_shard_of_every_parameter(facts):
    full = {n: tuple(p.shape) for n, p in build().named_parameters()}
    for f in facts:
        assert set(f["placements"].values()) == {"(Shard(dim=0),)"}
        assert f["local_shapes"] == {n: (s[0] // 2, *s[1:]) for n, s in full.items()}


def test_weights_gradients_and_adam_states_are_the_zero_3_bytes(facts):
    psi = sum(p.numel() for p in build().parameters())
    for f in facts:  # float32 weights and gradients, Adam's two float32 moments, no separate master copy
        assert f["param_bytes"] == psi * 4 / 2
        assert f["grad_bytes"] == psi * 4 / 2
        assert f["adam_bytes"] == psi * 8 / 2
        held = f["param_bytes"] + f["grad_bytes"] + f["adam_bytes"]
        assert held == zero_bytes_per_rank(psi, 2, 3, param_bytes=4, grad_bytes=4, optimizer_bytes=8)


def test_one_step_all_gathers_each_unit_twice_but_the_root_once_and_reduce_scatters_each(facts):
    for f in facts:  # 3 units: forward gathers 3, backward re-gathers the 2 resharded ones; 3 gradient shards
        assert f["counts"] == {"c10d._allgather_base_": 5, "c10d._reduce_scatter_base_": 3}
        # every layer its own unit, the root empty: every unit is gathered twice
        assert f["counts_every_layer"] == {"c10d._allgather_base_": 6, "c10d._reduce_scatter_base_": 3}


def test_fsdp2_warns_only_under_comm_debug_mode(facts):
    for f in facts:  # the counter makes the root's output a view, which FSDP2 then warns about
        assert f["warnings"] == (["FSDP2-wrapped module", "Full backward hook is firing"], 0)


def test_the_sharded_step_equals_the_unsharded_step(facts):
    assert all(f["step_err"] < 1e-6 for f in facts)


def test_sharding_the_state_does_not_shrink_the_activations(facts):
    for f in facts:
        assert f["sharded_activations"] == f["plain_activations"] > 0


def zero1_facts(rank, world_size):
    """torch's stage 1, ZeroRedundancyOptimizer under DDP: what one step sends, and the Adam state it keeps."""
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    model = build()
    ddp = DistributedDataParallel(model)
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, lr=1e-2)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 16, generator=g), torch.randn(8, 8, generator=g)
    mine = slice(4 * rank, 4 * rank + 4)
    for _ in range(2):  # the second step: DDP's buckets rebuilt, Adam's state allocated
        opt.zero_grad()
        with BytesSent() as backward:
            nn.functional.mse_loss(ddp(x[mine]), y[mine]).backward()
        with BytesSent() as step:
            opt.step()
    moments = [s[k] for s in opt.optim.state.values() for k in ("exp_avg", "exp_avg_sq")]
    return {
        "backward": backward.bytes,
        "step": step.bytes,
        "adam": sum(t.numel() * t.element_size() for t in moments),
    }


@pytest.fixture(scope="module")
def zero1():
    return run_ranks(f"{HERE}:zero1_facts", 2, timeout=120)


def test_zero_redundancy_optimizer_keeps_ddps_all_reduce_and_then_broadcasts_the_updated_shards(zero1):
    p_bytes = 4 * sum(p.numel() for p in build().parameters())  # float32
    for f in zero1:  # DDP's whole all-reduce is still there: 2 (N-1)/N of the gradients, at N = 2
        assert p_bytes <= f["backward"] < p_bytes + 4096
        assert 0 < f["adam"] < 2 * p_bytes  # each rank keeps Adam's moments of its partition only
    assert sum(f["adam"] for f in zero1) == 2 * p_bytes  # the partitions cover the model once
    sent = sum(f["step"] for f in zero1)  # the step broadcasts each rank's updated partition to the other
    assert p_bytes <= sent < 1.5 * p_bytes  # every weight crosses once more: unlike the ZeRO paper's stage 1
