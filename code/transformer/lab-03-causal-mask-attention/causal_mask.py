"""Lab 03 · Causal Mask and Attention Scores. Run: python causal_mask.py

A decoder's query i may read keys 0..i only. The mask is added to the
scores before the softmax: 0 where a key is visible, a huge negative
number where it is not. Padding hides keys too; a decode step's single
query sees every cached key.
"""

import math

import torch
import torch.nn.functional as F  # noqa: N812

from infralens.transformer import causal_mask, padded_causal_mask

# [1] Setup / contract
torch.manual_seed(0)
B, H, S, Dh = 1, 2, 5, 8  # batch, heads, tokens, head size
q, k, v = torch.randn(3, B, H, S, Dh).unbind(0)  # (B, H, S, Dh) each
mask = causal_mask(S)  # (S, S): 0 on and below the diagonal, min above
attention_mask = torch.tensor([[0, 0, 1, 1, 1]])  # (B, S): left-padded

# [2] Main transition
scores = q @ k.transpose(-2, -1) / math.sqrt(Dh)  # (B, H, S, S)
weights = (scores + mask).softmax(dim=-1)  # mask BEFORE the softmax
out = weights @ v  # (B, H, S, Dh)
sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)
# the bug: mask AFTER the softmax (future keys already normalised in)
leaky = scores.softmax(dim=-1) * (mask == 0)  # (B, H, S, S)
k2 = k.clone()
k2[:, :, -1] += 3.0  # change only the last key, in every query's future
scores2 = q @ k2.transpose(-2, -1) / math.sqrt(Dh)
out2 = (scores2 + mask).softmax(dim=-1) @ v
leaky2 = scores2.softmax(dim=-1) * (mask == 0)
# decode: one new query at position S - 1 against S cached keys
decode_mask = causal_mask(1, S)  # (1, S): every key visible
step = (scores[:, :, -1:] + decode_mask).softmax(dim=-1) @ v  # (B, H, 1, Dh)
padded = padded_causal_mask(attention_mask)  # (B, 1, S, S) causal & keys

# [3] Interview hook
row = torch.randn(S)  # scores of a query that sees no key (a pad query)
nan_row = (row + torch.full((S,), float("-inf"))).softmax(-1)  # 0 / 0
min_row = (row + torch.finfo(row.dtype).min).softmax(-1)  # uniform 1/S
hidden = torch.zeros(1, 1, 1, S, dtype=torch.bool)  # SDPA: True = visible
q1, k1, v1 = q[:, :1, :1], k[:, :1], v[:, :1]  # (1, 1, 1, Dh), (1, 1, S, Dh)
sdpa_row = F.scaled_dot_product_attention(q1, k1, v1, attn_mask=hidden)
# [end]


def grid(m: torch.Tensor) -> list[str]:
    """An additive mask as rows of '0' (visible) and '-' (hidden)."""
    return [" ".join("0" if x == 0 else "-" for x in r) for r in m.tolist()]


if __name__ == "__main__":
    print(f"Causal mask ({S}, {S}), 0 = visible, - = finfo.min")
    for i, r in enumerate(grid(mask)):
        print(f"  query {i}: {r}")
    print(f"  hidden value: {mask.min().item():.4e}")
    print("\nMasked before softmax")
    sums = weights.sum(-1)
    print(f"  rows sum to 1: {torch.allclose(sums, torch.ones_like(sums))}")
    future = weights.triu(diagonal=1)
    print(f"  weight on future keys: {future.abs().max().item():.1e}")
    same = torch.allclose(out, sdpa, atol=1e-6)
    print(f"  equals SDPA(is_causal=True): {same}")
    print("\nMasked after softmax (the leak)")
    lsum = leaky.sum(-1)[0, 0]
    print(f"  row sums, head 0: {[round(x, 3) for x in lsum.tolist()]}")
    d_ok = (out2 - out)[..., 0, :].abs().max().item()
    d_leak = (leaky2 - leaky)[..., 0, 0].abs().max().item()
    print("  change the last key; what moves at query 0?")
    print(f"    masked before: output changes by {d_ok:.1e}")
    print(f"    masked after:  its weight on key 0 changes by {d_leak:.3f}")
    print("\nDecode: one query, S cached keys")
    print(f"  mask {grid(decode_mask)[0]}  shape {tuple(decode_mask.shape)}")
    last = torch.allclose(step, out[:, :, -1:], atol=1e-6)
    print(f"  equals the last row of the full pass: {last}")
    print(f"\nPadding {attention_mask.tolist()[0]} combined with causal")
    for i, r in enumerate(grid(padded[0, 0])):
        print(f"  query {i}: {r}")
    print("\nA row that sees no key (queries 0 and 1 above)")
    print(f"  -inf mask:       {[round(x, 3) for x in nan_row.tolist()]}")
    print(f"  finfo.min mask:  {[round(x, 3) for x in min_row.tolist()]}")
    zeros = bool((sdpa_row == 0).all())
    print(f"  SDPA, boolean mask all False: output all zero: {zeros}")
