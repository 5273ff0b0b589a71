"""Lab 02 · Q/K/V Shape Walkthrough. Run: python qkv_shapes.py

Hidden states (B, S, D) go through three projections; each result is cut
into H heads of Dh channels, (B, H, S, Dh), and every head scores every
query against every key, (B, H, S, S). Grouped-query attention keeps fewer
key/value heads and shares each one among a group of query heads.
"""

import math

import torch

from infralens.transformer import MultiHeadAttention, repeat_kv

# [1] Setup / contract
torch.manual_seed(0)
B, S, D, H = 2, 6, 64, 8  # batch, tokens, model width, query heads
Dh = D // H  # channels per head (a config field: need not be D / H)
x = torch.randn(B, S, D)  # (B, S, D) hidden states entering attention
attn = MultiHeadAttention(D, H)  # W_Q, W_K, W_V: D -> H * Dh each

# [2] Main transition
q = attn.q_proj(x)  # (B, S, H * Dh): one projection for all heads
q = q.view(B, S, H, Dh).transpose(1, 2)  # (B, H, S, Dh)
k = attn.k_proj(x).view(B, S, H, Dh).transpose(1, 2)  # (B, H, S, Dh)
v = attn.v_proj(x).view(B, S, H, Dh).transpose(1, 2)  # (B, H, S, Dh)
scores = q @ k.transpose(-2, -1) / math.sqrt(Dh)  # (B, H, S, S)
wrong = attn.q_proj(x).reshape(B, H, S, Dh)  # right shape, mixed heads
# why 1/sqrt(Dh): unit-variance q and k give dot products of variance Dh
g = torch.Generator().manual_seed(1)
qs, ks = torch.randn(2, 100_000, Dh, generator=g)  # (N, Dh) each
raw = (qs * ks).sum(-1)  # (N,) unscaled q.k
scaled = raw / math.sqrt(Dh)  # (N,) as attention scales them

# [3] Interview hook
H_kv = 2  # grouped-query attention: 2 KV heads serve 8 query heads
gqa = MultiHeadAttention(D, H, kv_heads=H_kv)  # W_K, W_V: D -> H_kv * Dh
q_g, k_g, v_g = gqa.project(x)  # (B, H, S, Dh), (B, H_kv, S, Dh) x 2
k_rep = repeat_kv(k_g, H // H_kv)  # (B, H, S, Dh): head j reads j // 4
out = gqa(x)  # (B, S, D): attention, heads merged, o_proj
# [end]


def saturation(s: torch.Tensor) -> float:
    """Mean largest softmax weight of a row of 128 keys: 1 = one-hot."""
    rows = s[: 128 * 700].view(700, 128)
    return rows.softmax(-1).max(-1).values.mean().item()


if __name__ == "__main__":
    print(f"B={B}, S={S}, D={D}, H={H}, Dh={Dh}")
    print("\nShapes, projection to scores")
    for name, t in (
        ("x", x),
        ("q_proj(x)", attn.q_proj(x)),
        ("q", q),
        ("k", k),
        ("v", v),
        ("scores", scores),
    ):
        print(f"  {name:<10} {tuple(t.shape)!s:<16}")
    head1 = attn.q_proj(x)[..., Dh : 2 * Dh]  # channels of head 1
    print(
        f"  q[:, 1] is channels {Dh}..{2 * Dh - 1} of q_proj(x): "
        f"{torch.equal(q[:, 1], head1)}"
    )
    print(
        f"  reshape without transpose, same shape: "
        f"{tuple(wrong.shape) == tuple(q.shape)}, "
        f"same values: {torch.equal(wrong, q)}"
    )
    print(f"\nScore variance over {raw.numel():,} unit-variance pairs")
    print(f"  q.k            var {raw.var().item():6.3f}  (Dh = {Dh})")
    print(f"  q.k / sqrt(Dh) var {scaled.var().item():6.3f}")
    print(
        f"  softmax over 128 keys, mean max weight: "
        f"{saturation(raw):.3f} unscaled, {saturation(scaled):.3f} scaled"
    )
    print(f"\nGrouped-query attention, H={H}, H_kv={H_kv}")
    for name, t in (
        ("q", q_g),
        ("k", k_g),
        ("v", v_g),
        ("repeat_kv(k)", k_rep),
        ("out", out),
    ):
        print(f"  {name:<13} {tuple(t.shape)!s:<16}")
    same = all(
        torch.equal(k_rep[:, j], k_g[:, j // (H // H_kv)]) for j in range(H)
    )
    print(f"  query head j reads KV head j // {H // H_kv}: {same}")
    for name, m in (("MHA", attn), ("GQA", gqa)):
        kv = m.k_proj.weight.numel() + m.v_proj.weight.numel()
        print(f"  {name}: K and V projection weights {kv:,}")
