"""Lab 02 · ZeRO / FSDP State Sharding. Run: python zero_fsdp_states.py

Data parallelism keeps a full copy of the training state on every rank:
weights, gradients and the optimizer's state. ZeRO stages 1, 2 and 3 shard
the optimizer state, then the gradients, then the weights over the ranks.
FSDP2's fully_shard is stage 3: each rank keeps 1/N of every parameter,
all-gathers a layer's weights just before using them and reduce-scatters
its gradients after. Activations are not sharded.
"""

import math
import warnings

import torch
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor.debug import CommDebugMode

from infralens.distributed import (
    ZERO_STAGES,
    BytesSent,
    all_gather_bytes,
    reduce_scatter_bytes,
    ring_allreduce_bytes,
    run_ranks,
    zero_bytes_per_rank,
)

WORLD = 2


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(16, 64)
        self.mid = nn.Linear(64, 64)
        self.down = nn.Linear(64, 8)

    def forward(self, x):  # (B, 16) -> (B, 8)
        h = torch.relu(self.up(x))  # (B, 64)
        return self.down(torch.relu(self.mid(h)))


class SavedBytes:
    """Bytes autograd saves for backward in a block, weights left out."""

    def __init__(self):
        self.bytes = 0
        self.hooks = torch.autograd.graph.saved_tensors_hooks(
            self.pack, lambda t: t
        )

    def pack(self, t):
        if not (t.is_leaf and t.requires_grad):  # not a weight
            self.bytes += t.numel() * t.element_size()
        return t

    def __enter__(self):
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.hooks.__exit__(*exc)


def build():
    torch.manual_seed(0)
    return MLP()


def local_bytes(tensors):
    """Bytes this rank holds of DTensors (their local shards)."""
    return sum(
        t.to_local().numel() * t.to_local().element_size() for t in tensors
    )


# [1] Setup / contract
PSI, RANKS = 7_000_000_000, 8  # a 7B model, 8 data-parallel ranks
# ZeRO's convention: bf16 weight 2 + bf16 grad 2 + fp32 Adam state 12
LEDGER = {s: zero_bytes_per_rank(PSI, RANKS, s) for s in ZERO_STAGES}
TWELVE = zero_bytes_per_rank(PSI, RANKS, 3, optimizer_bytes=8)  # no master


def worker(rank, world_size):
    model, alone = build(), build()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 16, generator=g), torch.randn(8, 8, generator=g)
    mine = slice(4 * rank, 4 * rank + 4)  # this rank's half of the batch
    with SavedBytes() as plain:  # activations of the unsharded model
        nn.functional.mse_loss(alone(x[mine]), y[mine])
    for layer in (model.up, model.mid, model.down):
        fully_shard(layer)  # one unit per layer: 1/N of each on this rank
    fully_shard(model)  # the root unit (no parameters of its own)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    # [2] Main transition
    comm = CommDebugMode()  # counts the collectives torch issues
    with warnings.catch_warnings(), comm, BytesSent() as wire:
        # under CommDebugMode FSDP2 warns about a view it makes itself
        warnings.filterwarnings("ignore", "FSDP2-wrapped|Full backward")
        with SavedBytes() as sharded:  # forward: gather, use, free
            loss = nn.functional.mse_loss(model(x[mine]), y[mine])
        loss.backward()  # gather again, then reduce-scatter grads
    opt.step()  # Adam updates this rank's shard only
    states = [[s["exp_avg"], s["exp_avg_sq"]] for s in opt.state.values()]
    held = {
        "weights": local_bytes(model.parameters()),
        "gradients": local_bytes(p.grad for p in model.parameters()),
        "adam": sum(local_bytes(pair) for pair in states),
    }
    alone_opt = torch.optim.Adam(alone.parameters(), lr=1e-2)
    nn.functional.mse_loss(alone(x), y).backward()  # one process
    alone_opt.step()
    pairs = zip(model.parameters(), alone.parameters(), strict=True)
    gap = max((p.full_tensor() - q).abs().max().item() for p, q in pairs)

    # [3] Interview hook
    activations = (plain.bytes, sharded.bytes)  # what sharding did not touch
    # [end]
    return {
        "shapes": {
            n: (tuple(p.shape), tuple(p.to_local().shape), str(p.placements))
            for n, p in model.named_parameters()
        },
        "held": held,
        "counts": {str(k): v for k, v in comm.get_comm_counts().items()},
        "wire": wire.bytes,
        "gap": gap,
        "activations": activations,
    }


if __name__ == "__main__":
    print(f"ZeRO bytes per rank, {PSI / 1e9:.0f}B parameters on {RANKS} ranks")
    print("  16 bytes per parameter: bf16 weight + grad, fp32 Adam state 12")
    for stage, nbytes in LEDGER.items():
        print(f"  stage {stage}: {nbytes / 1e9:7.2f} GB")
    print(f"  stage 3 with 12 bytes per parameter: {TWELVE / 1e9:.2f} GB")

    r0, r1 = run_ranks(worker, WORLD)
    print(f"\nFSDP2 fully_shard on {WORLD} processes: what each rank holds")
    print(f"  {'parameter':<12}{'full':>10}{'rank 0':>10}  placement")
    for name, (full, local, placement) in r0["shapes"].items():
        print(f"  {name:<12}{full!s:>10}{local!s:>10}  {placement}")
    psi = sum(math.prod(full) for full, _, _ in r0["shapes"].values())
    print(f"  bytes held by rank 0 ({psi:,} float32 parameters in all)")
    for kind, nbytes in r0["held"].items():
        print(f"    {kind:<10}{nbytes:>8,}")
    total = sum(r0["held"].values())
    formula = zero_bytes_per_rank(
        psi, WORLD, 3, param_bytes=4, grad_bytes=4, optimizer_bytes=8
    )
    print(f"    {'total':<10}{total:>8,}  stage-3 formula {formula:,.0f}")
    print(f"  same on rank 1: {r0['held'] == r1['held']}")

    print("\nOne training step: collectives issued by each rank")
    for op, n in r0["counts"].items():
        print(f"  {op:<28}{n}")
    p_bytes = psi * 4
    gathers = 2 * all_gather_bytes(p_bytes, WORLD)  # forward and backward
    ring = gathers + reduce_scatter_bytes(p_bytes, WORLD)
    ddp = ring_allreduce_bytes(p_bytes, WORLD)
    gloo = gathers + ddp  # gloo reduce-scatters with an all-reduce
    print("  bytes sent per rank")
    print(f"    ring collectives (NCCL-like): {ring:>8,.0f}")
    print(f"    DDP's all-reduce, for scale:  {ddp:>8,.0f}")
    print(f"    gloo's algorithms:            {gloo:>8,.0f}")
    print(f"    counted on gloo by the kernel:{r0['wire']:>8,}")
    print(f"  sharded step vs one process: max |diff| {r0['gap']:.1e}")

    plain, sharded = r0["activations"]
    print("\nActivations saved for backward, rank 0")
    print(f"  unsharded model {plain:,} bytes, FSDP {sharded:,} bytes")
