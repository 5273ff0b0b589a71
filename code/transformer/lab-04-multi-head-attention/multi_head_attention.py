"""Lab 04 · Multi-Head Attention. Run: python multi_head_attention.py

Multi-head attention written out in torch, checked against torch's
nn.MultiheadAttention and scaled_dot_product_attention with the same
weights; then its FLOPs, counted by torch's FLOP counter, split between
the four projections and the score/value products.
"""

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.flop_counter import FlopCounterMode

from infralens.transformer import (
    MultiHeadAttention,
    attention_crossover,
    causal_mask,
    count_attention_flops,
    merge_heads,
)

# [1] Setup / contract
torch.manual_seed(0)
B, S, D, H = 2, 10, 64, 8  # batch, tokens, width, heads
Dh = D // H
x = torch.randn(B, S, D)  # (B, S, D)
attn = MultiHeadAttention(D, H)  # q_proj, k_proj, v_proj, o_proj: D -> D
mha = attn.to_torch()  # nn.MultiheadAttention holding the same weights

# [2] Main transition
q, k, v = attn.project(x)  # (B, H, S, Dh) each
scores = q @ k.transpose(-2, -1) / math.sqrt(Dh)  # (B, H, S, S)
heads = (scores + causal_mask(S)).softmax(dim=-1) @ v  # (B, H, S, Dh)
out = attn.o_proj(merge_heads(heads))  # (B, S, H * Dh) -> (B, S, D)
hidden = torch.ones(S, S, dtype=torch.bool).triu(1)  # nn.MHA: True = hidden
torch_out, _ = mha(x, x, x, attn_mask=hidden, need_weights=False)
fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B,H,S,Dh)
sdpa_out = attn.o_proj(merge_heads(fused))  # (B, S, D)
# o_proj mixes the heads: the output is a sum of one term per head
W_O = attn.o_proj.weight  # (D, H * Dh)
per_head = [heads[:, h] @ W_O[:, h * Dh : (h + 1) * Dh].T for h in range(H)]

# [3] Interview hook
with torch.device("meta"):  # shapes only: no memory, no arithmetic
    big = MultiHeadAttention(4096, 32)  # D = 4096, H = 32, Dh = 128
lengths = (1024, 4096, 8192, 32768)
flops = {
    s: count_attention_flops(big, torch.empty(1, s, 4096, device="meta"))
    for s in lengths
}  # projections vs scores + values, per length
crossing = attention_crossover(dim=4096, heads=32)  # S* = 2 D for MHA
with FlopCounterMode(display=False) as sdpa_count:
    F.scaled_dot_product_attention(q, k, v, is_causal=True)
# [end]


if __name__ == "__main__":
    print(f"B={B}, S={S}, D={D}, H={H}, Dh={Dh}: causal self-attention")
    print(f"  from scratch     {tuple(out.shape)}")
    for name, other in (
        ("attn(x)", attn(x)),
        ("nn.MultiheadAttention", torch_out),
        ("SDPA + o_proj", sdpa_out),
    ):
        diff = (other - out).abs().max().item()
        print(f"  {name:<22} max |diff| {diff:.1e}")
    total = torch.stack(per_head).sum(0)
    print(
        f"  sum of {H} per-head terms = output: "
        f"{torch.allclose(total, out, atol=1e-6)}"
    )
    touched = (per_head[0].abs() > 0).any(dim=(0, 1)).sum().item()
    print(f"  head 0's term reaches {touched} of {D} output channels")
    print("\nFLOPs of one layer, D=4096, H=32, B=1 (counted on meta)")
    print(f"  {'S':>6} {'projections':>18} {'scores+values':>18} {'ratio':>6}")
    for s, f in flops.items():
        ratio = f.attention / f.projections
        print(
            f"  {s:>6} {f.projections:>18,} {f.attention:>18,} {ratio:>6.2f}"
        )
    print(f"  crossing at S* = {crossing:,.0f} = 2 D")
    print(
        f"\ntorch's FLOP counter on SDPA's fused CPU kernel: "
        f"{sdpa_count.get_total_flops()} FLOPs"
    )
