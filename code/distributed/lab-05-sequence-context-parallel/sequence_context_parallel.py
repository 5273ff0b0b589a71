"""Lab 05 · Sequence / Context Parallel.

Run: python sequence_context_parallel.py

Each rank holds a contiguous slice of the sequence. Three ways to still
compute the whole layer exactly, each on two processes here:
Megatron sequence parallel keeps norm and dropout on the token slice and
gathers the tokens only inside the tensor-parallel MLP; Ulysses swaps the
token split for a head split with all-to-alls around attention; ring
attention passes K/V blocks around the ranks and folds them into an online
softmax. The sequence (97 tokens) does not split evenly: it is padded.
"""

import torch
from torch import nn
from torch.nn.functional import gelu, scaled_dot_product_attention

from infralens.distributed import (
    SEQUENCE_SCHEMES,
    BytesSent,
    all_gather_bytes,
    check_heads_divisible,
    gather_sequence,
    padded_length,
    reduce_scatter_bytes,
    reduce_scatter_sequence,
    ring_attention,
    run_ranks,
    sequence_parallel_bytes,
    split_sequence,
    ulysses_attention,
)

WORLD = 2
B, H, S, Dh = 1, 4, 97, 16  # batch, heads, tokens (odd on purpose), dim
D, FF, P_DROP = H * Dh, 4 * H * Dh, 0.1  # width, MLP width, dropout


def tensors(dtype=torch.float64):
    """The same q, k, v (B, H, S, Dh) and x (B, S, D) on every rank."""
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, B, H, S, Dh, generator=g, dtype=dtype)
    x = torch.randn(B, S, D, generator=g, dtype=dtype)
    return q, k, v, x


def mlp_block():
    torch.manual_seed(0)
    block = nn.ModuleDict(
        {
            "norm": nn.LayerNorm(D),
            "up": nn.Linear(D, FF),
            "down": nn.Linear(FF, D),
        }
    )
    return block.double()


def worker(rank, world_size):
    # [1] Setup / contract
    q, k, v, x = tensors()  # whole tensors, only to build shards and check
    qs, ks, vs = (split_sequence(t, rank, world_size) for t in (q, k, v))
    x_mine = split_sequence(x, rank, world_size, dim=1)  # (B, s, D)
    blk = mlp_block()
    keep = torch.rand(B, S, D, generator=torch.Generator().manual_seed(1))
    keep = (keep > P_DROP).double() / (1 - P_DROP)  # one dropout mask
    f = FF // world_size
    cols = slice(rank * f, (rank + 1) * f)  # my MLP features (TP)
    W1, b1 = blk["up"].weight, blk["up"].bias  # (FF, D), (FF,)
    W2, b2 = blk["down"].weight, blk["down"].bias  # (D, FF), (D,)

    # [2] Main transition
    with torch.no_grad(), BytesSent() as sp_wire:
        a = blk["norm"](x_mine)  # norm on my tokens only: (B, s, D)
        a_all = gather_sequence(a, dim=1)  # g: all tokens (B, N s, D)
        h = gelu(a_all @ W1[cols].T + b1[cols])  # column-parallel
        partial = h @ W2[:, cols].T  # row-parallel: one term of the sum
        o = reduce_scatter_sequence(partial, dim=1) + b2  # g-bar: (B, s, D)
        drop = split_sequence(keep, rank, world_size, dim=1)
        z_mine = x_mine + o * drop  # dropout on my tokens only
    with BytesSent() as ulysses_wire:
        u = ulysses_attention(qs, ks, vs, seq_len=S, causal=True)
    trace = []
    with BytesSent() as ring_wire:
        r = ring_attention(qs, ks, vs, seq_len=S, causal=True, trace=trace)

    # [3] Interview hook
    with torch.no_grad():  # the references: one process, whole sequence
        mlp = blk["down"](gelu(blk["up"](blk["norm"](x))))
        z_ref = x + mlp * keep
    full = scaled_dot_product_attention(q, k, v, is_causal=True)
    gaps = {
        "megatron": (gather_sequence(z_mine, dim=1, seq_len=S) - z_ref),
        "ulysses": gather_sequence(u, seq_len=S) - full,
        "ring": gather_sequence(r, seq_len=S) - full,
    }
    # [end]
    return {
        "shapes": (tuple(qs.shape), tuple(x_mine.shape), tuple(a_all.shape)),
        "gaps": {n: g.abs().max().item() for n, g in gaps.items()},
        "wire": (sp_wire.bytes, ulysses_wire.bytes, ring_wire.bytes),
        "trace": trace,
    }


if __name__ == "__main__":
    r0, r1 = run_ranks(worker, WORLD)
    pad = padded_length(S, WORLD)
    print(
        f"{S} tokens on {WORLD} ranks: padded to {pad}, "
        f"{pad // WORLD} per rank"
    )
    q_shape, x_shape, gathered = r0["shapes"]
    print(f"  q, k, v shard {q_shape} (B, H, s, Dh); x shard {x_shape}")
    print(f"  inside the TP MLP the tokens are gathered: {gathered}")

    print("\nEach scheme vs one process, whole sequence (float64)")
    for name, gap in r0["gaps"].items():
        print(f"  {name:<9} max |difference| {gap:.1e}")

    print("\nRing attention, causal: the K/V blocks rank by rank")
    for rank, r in enumerate((r0, r1)):
        steps = ", ".join(
            f"step {t}: rank {owner}'s block "
            + ("computed" if done else "skipped")
            for t, owner, done in r["trace"]
        )
        print(f"  rank {rank}: {steps}")

    print("\nBytes rank 0 sent in this layer (float64), formula vs counted")
    sp_bytes = B * pad * D * 8  # the (B, S, D) activation
    megatron = all_gather_bytes(sp_bytes, WORLD)
    megatron += reduce_scatter_bytes(sp_bytes, WORLD)
    shape = dict(batch=B, seq_len=S, heads=H, head_dim=Dh, world_size=WORLD)
    formulas = [megatron] + [
        2 * sequence_parallel_bytes(s, **shape, dtype="fp32")  # fp64
        for s in ("ulysses", "ring")
    ]
    names = ("megatron (MLP block)", "ulysses attention", "ring attention")
    for name, formula, counted in zip(
        names, formulas, r0["wire"], strict=True
    ):
        print(f"  {name:<21}{formula:>8,.0f}{counted:>8,}")

    print("\nPer transformer layer, forward, at 32k tokens, 32 heads x 128,")
    print("8 ranks, bf16 (MiB sent per rank)")
    big = dict(batch=1, seq_len=32_768, heads=32, head_dim=128, world_size=8)
    for scheme in SEQUENCE_SCHEMES:
        mib = sequence_parallel_bytes(scheme, **big) / 2**20
        print(f"  {scheme:<9}{mib:>7.0f}")

    print("\nUlysses needs heads divisible by ranks")
    try:
        check_heads_divisible(5, WORLD)
    except ValueError as err:
        print(f"  ValueError: {err}")
