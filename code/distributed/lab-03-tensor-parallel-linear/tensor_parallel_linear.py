"""Lab 03 · Tensor Parallel Linear. Run: python tensor_parallel_linear.py

A linear layer y = x W^T + b can be split over ranks two ways. Column-
parallel splits W's rows, the output features: each rank computes its own
slice of y, and the slices are concatenated (or kept for the next layer).
Row-parallel splits W's columns, the input features: each rank computes a
partial y from its slice of x, and the partials are summed (all-reduce).
The Megatron MLP puts a column-parallel layer before a row-parallel one,
so its forward needs one all-reduce.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    RowwiseParallel,
    parallelize_module,
)

from infralens.distributed import BytesSent, ring_allreduce_bytes, run_ranks

WORLD = 2
B, S, D, F = 4, 32, 16, 64  # batch, tokens, model width, MLP width


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Linear(D, F), nn.Linear(F, D)

    def forward(self, x):  # (B, S, D) -> (B, S, D)
        return self.down(torch.relu(self.up(x)))


def build():
    torch.manual_seed(0)
    return MLP()


def worker(rank, world_size):
    # [1] Setup / contract
    full = build()  # every rank starts from the same unsharded MLP
    x = torch.randn(B, S, D, generator=torch.Generator().manual_seed(1))
    W1, b1 = full.up.weight.detach(), full.up.bias.detach()  # (F, D), (F,)
    W2, b2 = full.down.weight.detach(), full.down.bias.detach()  # (D, F)
    f = F // world_size  # hidden features per rank
    cols = slice(rank * f, (rank + 1) * f)  # this rank's hidden features
    reference = full(x).detach()  # (B, S, D) one process

    # [2] Main transition
    # column-parallel: my rows of W1 give my slice of the hidden features
    h = torch.relu(x @ W1[cols].T + b1[cols])  # (B, S, F/N), no comm.
    shards = [torch.empty_like(h) for _ in range(world_size)]
    dist.all_gather(shards, h)  # only to check: concatenated, not summed
    h_full = torch.relu(x @ W1.T + b1)  # (B, S, F)
    column_ok = torch.allclose(torch.cat(shards, dim=-1), h_full)
    # row-parallel: my columns of W2 times my slice of h: a partial sum
    partial = h @ W2[:, cols].T  # (B, S, D), one term of the sum
    with BytesSent() as wire:
        dist.all_reduce(partial)  # the MLP's one all-reduce
    y = partial + b2  # the bias once, after the sum
    mlp_gap = (y - reference).abs().max().item()

    # [3] Interview hook
    # the original sketch: all-reduce the column shards (wrong)
    summed = h.clone()  # (B, S, F/N)
    dist.all_reduce(summed)
    summed_gap = (summed - h_full[..., :f]).abs().max().item()
    # the same MLP with DTensor: torch places the shards and the collective
    mesh = init_device_mesh("cpu", (world_size,))
    plan = {"up": ColwiseParallel(), "down": RowwiseParallel()}
    tp = parallelize_module(build(), mesh, plan)
    comm = CommDebugMode()
    with comm:
        y_tp = tp(x)  # (B, S, D)
    # [end]
    return {
        "column_ok": column_ok,
        "mlp_gap": mlp_gap,
        "wire": wire.bytes,
        "summed": (tuple(summed.shape), summed_gap),
        "dtensor": {
            n: (tuple(p.to_local().shape), str(p.placements))
            for n, p in tp.named_parameters()
        },
        "dtensor_gap": (y_tp - reference).abs().max().item(),
        "counts": {str(k): v for k, v in comm.get_comm_counts().items()},
        "heads": split_heads(mesh),
    }


def split_heads(mesh, heads=3, head_dim=4):
    """Which heads' features each rank gets when TP does not divide heads."""
    q = nn.Linear(D, heads * head_dim)  # (H * Dh, D): Q for 3 heads
    parallelize_module(q, mesh, ColwiseParallel())
    rows = q.weight.to_local().shape[0]  # my output features
    start = [0, *torch.cumsum(torch.tensor(all_rows(rows)), 0).tolist()]
    mine = range(start[dist.get_rank()], start[dist.get_rank()] + rows)
    return rows, sorted({feature // head_dim for feature in mine})


def all_rows(rows):
    counts = [None] * dist.get_world_size()
    dist.all_gather_object(counts, rows)
    return counts


if __name__ == "__main__":
    r0, r1 = run_ranks(worker, WORLD)
    print(f"MLP {D} -> {F} -> {D} on {WORLD} processes, by hand")
    print(f"  column-parallel up: shards concatenate to h: {r0['column_ok']}")
    print(
        f"  row-parallel down + one all-reduce: max |y - y_1proc| "
        f"{r0['mlp_gap']:.1e}"
    )
    nbytes = B * S * D * 4  # (B, S, D) float32
    ring = ring_allreduce_bytes(nbytes, WORLD)
    print(
        f"  all-reduce of {(B, S, D)} float32 ({nbytes:,} bytes): ring "
        f"formula {ring:,.0f} bytes sent, counted {r0['wire']:,}"
    )
    shape, gap = r0["summed"]
    print("\nThe original sketch: all-reduce the column shards")
    print(
        f"  result shape {shape}, max |error| vs h[..., :{F // WORLD}]: "
        f"{gap:.2f}"
    )

    print("\nThe same MLP with DTensor parallelize_module")
    for name, (local, placement) in r0["dtensor"].items():
        print(f"  {name:<12}local {local!s:<9} {placement}")
    print(f"  collectives in forward: {r0['counts']}")
    print(f"  max |y_tp - y_1proc| {r0['dtensor_gap']:.1e}")

    print("\nQ of 3 heads x 4 features, ColwiseParallel on 2 ranks")
    for rank, (rows, heads) in enumerate((r0["heads"], r1["heads"])):
        print(f"  rank {rank}: {rows} features, parts of heads {heads}")
