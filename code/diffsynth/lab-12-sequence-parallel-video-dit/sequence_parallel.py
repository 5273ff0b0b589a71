"""Lab 12 · Sequence Parallel Video DiT.

Run: python sequence_parallel.py

A video DiT's self-attention over a sequence split across two real
processes (torch.distributed, gloo, on CPU). The tokens come from a tiny
Wan 2.1 request (9 frames of 48 x 80 pixels: 45 tokens, odd on purpose, so
the sequence is padded); the attention is the first block of a tiny Wan-style
DiT, with 4 heads. Ulysses swaps the token split for a head split with
all-to-alls; ring attention passes K/V blocks around the ranks into an
online softmax. Both must equal one process attending over every token.
Then the other axis: CFG parallel, one guidance branch per rank.
"""

import math
import textwrap

import torch
import torch.distributed as dist

from infralens.calculators import latent_tokens, weight_memory
from infralens.diffusion import cfg_combine
from infralens.distributed import (
    BytesSent,
    all_gather_bytes,
    check_heads_divisible,
    gather_sequence,
    padded_length,
    ring_attention,
    run_ranks,
    sequence_parallel_bytes,
    split_sequence,
    ulysses_attention,
)
from infralens.families import get_model
from infralens.memory import wan_dit_layer_params
from infralens.nets import TinyVideoDiT

WORLD = 2
HEIGHT, WIDTH, FRAMES = 48, 80, 9  # a tiny Wan 2.1 request
HEADS, DIM, SCALE = 4, 32, 5.0  # attention heads, model width, CFG scale


def tiny_dit():
    """The same seeded weights on every rank: sequence parallel copies them."""
    dit = TinyVideoDiT(text_dim=32, dim=DIM, num_heads=HEADS)  # 16 channels
    return dit.double()


def inputs():
    """Latent (B, C, F', H', W'), timestep, prompt, empty prompt (B, L, Dt)."""
    g = torch.Generator().manual_seed(0)
    latent = latent_tokens("wan2.1", height=HEIGHT, width=WIDTH, frames=FRAMES)
    z = torch.randn(latent.latent, generator=g, dtype=torch.float64)
    text, empty = torch.randn(2, 1, 7, 32, generator=g, dtype=torch.float64)
    return z, torch.tensor([700.0]), text, empty * 0


def qkv(attn, x):
    """Projections and Wan's qk-norm: (B, s, D) -> 3 x (B, H, s, Dh)."""
    B, s, D = x.shape
    q, k, v = attn.to_qkv(x).chunk(3, dim=-1)  # 3 x (B, s, D)
    q, k = attn.norm_q(q), attn.norm_k(k)  # per token: needs no peer
    H = attn.heads
    return tuple(u.view(B, s, H, D // H).transpose(1, 2) for u in (q, k, v))


def out_proj(attn, o):
    """(B, H, s, Dh) -> (B, s, D): heads side by side, output projection."""
    B, H, s, Dh = o.shape
    return attn.to_out(o.transpose(1, 2).reshape(B, s, H * Dh))  # (B, s, D)


def worker(rank, world_size):
    # [1] Setup / contract
    dit, (z, t, text, empty) = tiny_dit(), inputs()
    attn = dit.blocks[0].attn1  # Wan-style self-attention, whole on every rank
    x = dit.patchify(z)  # (B, S, D): every token, only to cut and to check
    S = x.shape[1]
    x_mine = split_sequence(x, rank, world_size, dim=1)  # (B, s, D), padded
    q, k, v = qkv(attn, x_mine)  # (B, H, s, Dh): projections need no peer

    # [2] Main transition
    with torch.no_grad():
        with BytesSent() as u_wire:
            u = ulysses_attention(q, k, v, seq_len=S)  # all-to-all and back
        with BytesSent() as r_wire:
            r = ring_attention(q, k, v, seq_len=S)  # K/V blocks go round
        unmasked = ring_attention(q, k, v)  # padded key visible: the trap
        outs = {"ulysses": out_proj(attn, u), "ring": out_proj(attn, r)}
        outs["ring, padding not hidden"] = out_proj(attn, unmasked)
        # the other axis, CFG parallel: rank 0 the prompt, rank 1 the empty one
        branch = dit(z, t, text if rank == 0 else empty)  # (B, C, F', H', W')
        both = torch.cat([branch] * world_size)  # (2B, C, F', H', W') buffer
        with BytesSent() as cfg_wire:
            dist.all_gather_single(both, branch)  # in rank order
        cond, uncond = both.chunk(2)  # (B, C, F', H', W') each
        guided = cfg_combine(uncond, cond, SCALE)  # the same on every rank

    # [3] Interview hook
    with torch.no_grad():  # the references: one process does everything
        full = attn(x)  # (B, S, D)
        gaps = {
            n: gather_sequence(o, dim=1, seq_len=S) - full  # trims padding
            for n, o in outs.items()
        }
        ref = cfg_combine(dit(z, t, empty), dit(z, t, text), SCALE)
        gaps["cfg parallel"] = guided - ref
    # [end]
    return {
        "shapes": (S, tuple(x_mine.shape), tuple(q.shape)),
        "params": sum(p.numel() for p in dit.parameters()),
        "gaps": {n: g.abs().max().item() for n, g in gaps.items()},
        "wire": (u_wire.bytes, r_wire.bytes, cfg_wire.bytes),
        "branch": tuple(branch.shape),
    }


def report(results):
    r0 = results[0]
    S, x_shape, q_shape = r0["shapes"]
    pad = padded_length(S, WORLD)
    print(f"{HEIGHT}x{WIDTH}, {FRAMES} frames -> {S} tokens on {WORLD} ranks:")
    print(f"  padded to {pad}, {pad // WORLD} per rank")
    print(f"  x shard {x_shape} (B, s, D)")
    print(f"  q, k, v shard {q_shape} (B, H, s, Dh)")
    for rank, r in enumerate(results):
        print(f"  parameters on rank {rank}: {r['params']:,}")

    print("\nEach scheme vs one process, gathered and trimmed (float64)")
    for name, gap in r0["gaps"].items():
        print(f"  {name:<25} max |difference| {gap:.1e}")

    print("\nBytes rank 0 sent (float64): formula, and the kernel's count")
    dims = dict(batch=1, seq_len=S, heads=HEADS, head_dim=DIM // HEADS)
    formulas = [  # float64 is twice float32
        2 * sequence_parallel_bytes(s, **dims, world_size=WORLD, dtype="fp32")
        for s in ("ulysses", "ring")
    ]
    both = WORLD * math.prod(r0["branch"]) * 8  # (2B, C, F', H', W') in fp64
    formulas.append(all_gather_bytes(both, WORLD))
    rows = zip(("ulysses", "ring", "cfg"), formulas, r0["wire"], strict=True)
    for name, formula, counted in rows:
        close = 0 <= counted - formula < 1024  # gloo adds small headers
        print(f"  {name:<8}{formula:>8,.0f}  counted within 1 KiB: {close}")

    wan = get_model("wan2.1-t2v-14b")
    big = latent_tokens("wan2.1", height=480, width=832, frames=81)
    print(f"\nWan 2.1 14B, 480x832, 81 frames: {big.tokens:,} tokens,")
    heads, head_dim = wan["num_heads"], wan["head_dim"]
    print(f"{heads} heads x {head_dim}, bf16. MiB sent per rank:")
    dims = dict(batch=1, seq_len=big.tokens, heads=heads, head_dim=head_dim)
    for n in (2, 4, 8):
        u = sequence_parallel_bytes("ulysses", **dims, world_size=n) / 2**20
        r = sequence_parallel_bytes("ring", **dims, world_size=n) / 2**20
        print(f"  {n} ranks, per layer: ulysses {u:6.1f}  ring {r:6.1f}")
    both = 2 * math.prod(big.latent) * 2  # (2B, C, F', H', W') in bf16
    cfg = all_gather_bytes(both, 2) / 2**20
    print(f"  CFG parallel on 2 ranks, once per step: {cfg:.1f}")
    params = sum(wan_dit_layer_params())
    weights = weight_memory(params=params, dtype="bf16").weight_bytes
    print(f"DiT weights on every rank, any rank count: {weights / 1e9:.1f} GB")

    print("\nUlysses needs heads divisible by ranks")
    for model in ("wan2.1-t2v-14b", "wan2.1-t2v-1.3b"):
        heads = get_model(model)["num_heads"]
        try:
            check_heads_divisible(heads, 8)
            print(f"  {model}: {heads} heads on 8 ranks: fine")
        except ValueError as err:
            print(f"  {model}: ValueError:")
            print(textwrap.indent(textwrap.fill(str(err), 68), " " * 4))


if __name__ == "__main__":
    report(run_ranks(worker, WORLD))
