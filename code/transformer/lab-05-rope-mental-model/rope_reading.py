"""Lab 05 · RoPE Mental Model. Run: python rope_reading.py

Rotary position embedding rotates each pair of query and key channels by
position x frequency, so a query-key score depends only on how far apart
the two tokens are. Which channels form a pair is a layout: "half" pairs
i with i + Dh/2 (transformers' Llama, rotate_half); "interleaved" pairs
2i with 2i + 1 (the RoPE paper, Meta's original Llama code).
"""

import torch

from infralens.transformer import (
    MultiHeadAttention,
    apply_rope,
    interleaved_rows_to_half,
    interleaved_to_half,
    rope_inv_freq,
    rope_scaled_inv_freq,
)

# [1] Setup / contract
torch.manual_seed(0)
Dh, base, S = 8, 10000.0, 6  # head size, rope_theta, tokens
inv_freq = rope_inv_freq(Dh, base)  # (Dh/2,) omega_i = base^(-2i/Dh)
positions = torch.arange(S)  # (S,) token positions m
q, k = torch.randn(2, 1, 1, S, Dh, dtype=torch.float64).unbind(0)  # (B,H,S,Dh)

# [2] Main transition
theta = positions[:, None] * inv_freq.double()  # (S, Dh/2): m * omega_i
cos, sin = theta.cos(), theta.sin()  # (S, Dh/2)
a, b = q[..., : Dh // 2], q[..., Dh // 2 :]  # half layout: (i, i + Dh/2)
q_half = torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
assert torch.allclose(q_half, apply_rope(q, positions, layout="half"))
q_inter = apply_rope(q, positions, layout="interleaved")  # (2i, 2i + 1)
perm = interleaved_to_half(Dh)  # channel order that maps one to the other
q_perm = apply_rope(q[..., perm], positions, layout="half")
# the relative-position property: shift both positions, same score
qv, kv = q[..., 2:3, :], k[..., 4:5, :]  # (1, 1, 1, Dh) one query, one key


def score(m: int, n: int) -> float:
    """q rotated to position m, dotted with k rotated to position n."""
    qm = apply_rope(qv, torch.tensor([m]))
    kn = apply_rope(kv, torch.tensor([n]))
    return (qm * kn).sum().item()


# [3] Interview hook
# a checkpoint trained with one layout, run with the other
x = torch.randn(1, S + 1, 32, dtype=torch.float64)  # (B, S + 1, D)
inter = MultiHeadAttention(32, 4, rope_base=base, rope_layout="interleaved")
half = MultiHeadAttention(32, 4, rope_base=base, rope_layout="half")
inter, half = inter.double(), half.double()
half.load_state_dict(inter.state_dict())  # same weights, other layout
wrong = half(x)
with torch.no_grad():  # reorder q and k rows per head: same model again
    for proj in (half.q_proj, half.k_proj):
        proj.weight.copy_(interleaved_rows_to_half(proj.weight, Dh))
# keys are cached AFTER rotation; a decode step rotates only its own token
_, k_cache, v_cache = half.project(x[:, :S])  # prefill, positions 0..S-1
q_new, k_new, v_new = half.project(x[:, S:], torch.tensor([S]))  # pos. S
step = half.attend(
    q_new, torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
)  # (B, 1, D)
twice = apply_rope(k_cache, positions)  # the bug: rotating cached keys again
# context extension: linear interpolation stretches every wavelength
linear = rope_scaled_inv_freq(Dh, factor=4.0)  # omega_i / 4
ntk = rope_scaled_inv_freq(Dh, factor=4.0, method="ntk")  # base grows
# [end]


if __name__ == "__main__":
    print("Layouts: 'half' = transformers' Llama (rotate_half),")
    print("           pairs (i, i + Dh/2)")
    print("         'interleaved' = RoPE paper, Meta's Llama code,")
    print("           pairs (2i, 2i + 1)")
    print(f"\nInverse frequencies, Dh={Dh}, base={base:g}")
    for i, w in enumerate(inv_freq.tolist()):
        turn = 2 * torch.pi / w
        print(
            f"  pair {i}: omega {w:.6f} rad/token, a full turn every "
            f"{turn:,.1f} tokens"
        )
    print("\nRotating q (positions 0..5)")
    same = torch.allclose(q_half, apply_rope(q, positions, layout="half"))
    print(f"  plain-torch half layout = apply_rope(layout='half'): {same}")
    norms = torch.allclose(q_half.norm(dim=-1), q.norm(dim=-1))
    print(f"  lengths unchanged (a rotation): {norms}")
    print(f"  interleaved = half: {torch.allclose(q_inter, q_half)}")
    print(
        f"  interleaved[..., perm] = half(q[..., perm]): "
        f"{torch.allclose(q_inter[..., perm], q_perm)}  perm {perm.tolist()}"
    )
    print("\nScore q_m . k_n depends on m - n only")
    for m, n in ((3, 1), (13, 11), (503, 501), (3, 2)):
        print(f"  m={m:>3} n={n:>3}  m-n={m - n}  score {score(m, n):+.6f}")
    print("\nA checkpoint moved between layouts")
    ref = inter(x)
    diff = (wrong - ref).abs().max().item()
    print(
        f"  interleaved weights run as half: max |diff| {diff:.2f}"
        f" (outputs up to {ref.abs().max().item():.2f})"
    )
    fixed = (half(x) - inter(x)).abs().max().item()
    print(f"  after permuting q_proj/k_proj rows: max |diff| {fixed:.1e}")
    print("\nKV cache: keys stored after RoPE, values never rotated")
    full = half(x)[:, S:]  # (B, 1, D) the last row of a full pass
    print(
        f"  decode step = full pass, last row: "
        f"{torch.allclose(step, full, atol=1e-12)}"
    )
    raw_v = half.v_proj(x[:, :S]).view(1, S, 4, Dh).transpose(1, 2)
    print(
        f"  cached values = v_proj(x), unrotated: "
        f"{torch.equal(v_cache, raw_v)}"
    )
    bad = half.attend(
        q_new, torch.cat([twice, k_new], 2), torch.cat([v_cache, v_new], 2)
    )
    print(
        f"  rotating cached keys again: max |diff| "
        f"{(bad - full).abs().max().item():.3f}"
    )
    print("\nContext extension by 4x: slowest pair's wavelength in tokens")
    for name, w in (("original", inv_freq), ("linear", linear), ("ntk", ntk)):
        fast, slow = (
            (2 * torch.pi / w[0]).item(),
            (2 * torch.pi / w[-1]).item(),
        )
        print(f"  {name:<9} fastest {fast:8.2f}  slowest {slow:12,.1f}")
