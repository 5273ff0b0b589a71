"""Lab 01 · DDP Gradient Buckets. Run: python ddp_gradient_buckets.py

Two processes each hold the whole model and half of the batch. During
backward, DistributedDataParallel groups gradients into buckets of at most
bucket_cap_mb and all-reduces each bucket as soon as its last gradient is
ready; a communication hook sees every bucket go. Averaged over the ranks,
the gradient equals one process's gradient of the whole batch.
"""

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from infralens.distributed import BytesSent, ring_allreduce_bytes, run_ranks

WORLD = 2  # processes (ranks)
BATCH = 8  # global batch: 4 samples per rank
CAP_MB = 0.004  # 4,194 bytes: one layer's weight and bias fill a bucket


class Four(nn.Module):
    """Four Linear(32, 32) layers: 4,096 + 128 bytes of float32 each."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(32, 32) for _ in range(4))

    def forward(self, x):  # (B, 32) -> (B, 32)
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


class Branchy(nn.Module):
    """A module with a branch that forward never uses."""

    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):  # (B, 4) -> (B, 4)
        return self.used(x)


def data():
    """The global batch, identical on every rank: x (B, 32), y (B, 32)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 32, generator=g)  # (B, 32)
    return x, torch.randn(BATCH, 32, generator=g)


def record_bucket(state, bucket):
    """The comm hook: log the bucket, then average it as DDP's default does."""
    names = [state["names"][id(p)] for p in bucket.parameters()]
    flat = bucket.buffer()  # (numel,) the bucket's gradients, flattened
    state["log"].append((state["step"], bucket.index(), names, flat.numel()))
    flat.div_(dist.get_world_size())  # sum over ranks / N = the average
    work = dist.all_reduce(flat, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def mse(model, x, y):
    return nn.functional.mse_loss(model(x), y)


def max_diff(a, b):
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    return max((p.grad - q.grad).abs().max().item() for p, q in pairs)


def worker(rank, world_size):
    # [1] Setup / contract
    torch.manual_seed(0)  # the whole model on every rank, same weights
    model = Four()
    ddp = DistributedDataParallel(model, bucket_cap_mb=CAP_MB)
    names = {id(p): n for n, p in model.named_parameters()}
    state = {"names": names, "log": [], "step": 0}
    ddp.register_comm_hook(state, record_bucket)
    x, y = data()  # (8, 32) each
    mine = slice(4 * rank, 4 * rank + 4)  # this rank's 4 samples

    # [2] Main transition
    wire = []
    for step in range(3):  # step 0 builds the buckets, steps 1-2 use them
        state["step"] = step
        ddp.zero_grad()
        with BytesSent() as sent:
            mse(ddp, x[mine], y[mine]).backward()  # buckets fire here
        wire.append(sent.bytes)
    torch.manual_seed(0)
    alone = Four()  # one process, the whole batch: the referent
    mse(alone, x, y).backward()
    grad_gap = max_diff(model, alone)

    # [3] Interview hook
    # gradient accumulation: no all-reduce inside no_sync, one after
    state["step"], before = 3, len(state["log"])
    ddp.zero_grad()
    with ddp.no_sync():
        mse(ddp, x[mine][:2], y[mine][:2]).backward()  # local only
    inside = len(state["log"]) - before
    mse(ddp, x[mine][2:], y[mine][2:]).backward()  # reduces the sum
    after = len(state["log"]) - before
    alone.zero_grad()
    for part in ((0, 1), (2, 3)):  # the same two micro-batches, all ranks
        rows = [4 * r + i for r in range(world_size) for i in part]
        mse(alone, x[rows], y[rows]).backward()  # grads add up
    # [end]
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "buckets": state["log"][:before],
        "wire": wire,
        "grad_gap": grad_gap,
        "no_sync": (inside, after, max_diff(model, alone)),
        "unused": unused_parameters(rank),
    }


def unused_parameters(rank):
    """Train Branchy two steps with and without find_unused_parameters."""
    result = {}
    for find in (False, True):
        torch.manual_seed(0)
        model = Branchy()
        ddp = DistributedDataParallel(model, find_unused_parameters=find)
        names = {id(p): n for n, p in model.named_parameters()}
        state = {"names": names, "log": [], "step": 0}
        ddp.register_comm_hook(state, record_bucket)
        steps = []
        for step in range(2):
            state["step"] = step
            x = torch.full((2, 4), float(rank + 1))  # (B, 4)
            ddp.zero_grad()
            try:
                ddp(x).sum().backward()
            except RuntimeError as err:
                steps.append(("error", str(err).split(". ")[0]))
                break
            grad = model.used.weight.grad[0, 0].item()
            steps.append(("ok", len(state["log"]), grad))
        result[find] = steps
    return result


if __name__ == "__main__":
    r0, r1 = run_ranks(worker, WORLD)
    cap = int(CAP_MB * 2**20)
    print(f"DDP on {WORLD} processes, bucket_cap_mb={CAP_MB} ({cap:,} bytes)")
    print(f"  every rank holds all {r0['params']:,} parameters (no split)")
    print("\nBuckets, in the order the comm hook saw them (rank 0)")
    print(f"  {'step':>4} {'bucket':>6} {'bytes':>7}  parameters")
    for step, index, names, numel in r0["buckets"]:
        shown = " ".join(names) if len(names) <= 2 else f"all {len(names)}"
        print(f"  {step:>4} {index:>6} {numel * 4:>7,}  {shown}")
    same = r0["buckets"] == r1["buckets"]
    print(f"  rank 1 saw the same buckets in the same order: {same}")

    total = r0["params"] * 4  # float32 gradients
    ring = ring_allreduce_bytes(total, WORLD)
    print(f"\nBytes sent per step by rank 0 (all-reduce of {total:,} bytes)")
    print(f"  ring formula 2(N-1)/N * n: {ring:,.0f}")
    for step, sent in enumerate(r0["wire"]):
        calls = sum(1 for b in r0["buckets"] if b[0] == step)
        extra = (sent - ring) / calls
        print(
            f"  step {step}, counted by the kernel: {sent:,} "
            f"({calls} all-reduce(s), {extra:,.0f} more bytes each)"
        )

    print("\nDDP averages: gradient vs one process on the whole batch")
    print(f"  max |difference| {r0['grad_gap']:.1e}")
    inside, after, gap = r0["no_sync"]
    print("no_sync accumulation of two micro-batches")
    print(f"  all-reduces inside no_sync: {inside}, after it: {after}")
    print(f"  max |difference| from one process: {gap:.1e}")

    print("\nA parameter forward never uses (Branchy.unused)")
    for find, steps in r0["unused"].items():
        print(f"  find_unused_parameters={find}")
        for step, outcome in enumerate(steps):
            if outcome[0] == "error":
                print(f"    step {step}: RuntimeError: {outcome[1]}")
                continue
            mine = outcome[2]
            other = r1["unused"][find][step][2]
            print(
                f"    step {step}: {outcome[1]} all-reduces so far; "
                f"used.weight.grad[0, 0] rank 0 {mine}, rank 1 {other}"
            )
