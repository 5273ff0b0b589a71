"""Lab 06 · FFN / SwiGLU Parameter Count. Run: python ffn_swiglu_params.py

A Llama block's feed-forward layer is SwiGLU: three matrices, not two. Its
width follows a rule (about 8/3 of the model width, rounded up), and with the
attention projections, the norms, the embeddings and the head it adds up to
the model's parameter count, a property of the config, not of the name.
"""

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from infralens.transformer import (
    LLAMA2_7B,
    DecoderConfig,
    TinyLlama,
    llama_param_breakdown,
    swiglu_intermediate_size,
)

# [1] Setup / contract
d = 64  # a tiny model width D
f = swiglu_intermediate_size(d, multiple_of=16)  # F: 8/3 * 64 = 170.7 -> 176
torch.manual_seed(0)
gate = nn.Linear(d, f, bias=False)  # W_gate: D -> F
up = nn.Linear(d, f, bias=False)  # W_up: D -> F
down = nn.Linear(f, d, bias=False)  # W_down: F -> D
x = torch.randn(2, 5, d)  # (B, S, D): normed hidden states

# [2] Main transition
h = F.silu(gate(x)) * up(x)  # (B, S, F): the gate scales the up projection
y = down(h)  # (B, S, D): back to the residual width
ffn = sum(m.weight.numel() for m in (gate, up, down))  # 3 D F
mlp = 2 * d * (4 * d)  # a two-matrix GELU MLP of width 4D: 8 D^2
with torch.device("meta"):  # shapes only: billions of parameters, no memory
    llama2 = TinyLlama(DecoderConfig(**LLAMA2_7B))  # our Llama at 7B size
counted = sum(p.numel() for p in llama2.parameters())
parts = llama_param_breakdown(**LLAMA2_7B)  # from the config alone
assert counted == parts.total

# [3] Interview hook
# "7B" and "8B" are names; the configs say where the parameters are
rule = {"multiple_of": 1024, "ffn_dim_multiplier": 1.3}  # Llama 3's setting
wider = swiglu_intermediate_size(4096, **rule)  # F = 14336
llama3 = LLAMA2_7B | {"vocab_size": 128256, "intermediate_size": wider}
llama3 |= {"num_key_value_heads": 8}  # grouped-query attention
parts3 = llama_param_breakdown(**llama3)
# [end]


if __name__ == "__main__":
    D = LLAMA2_7B["hidden_size"]
    print("SwiGLU width rule: F = m * ceil(floor(8D/3) / m)")
    for dim in (64, 4096, 5120):
        m = 16 if dim == 64 else 256
        width = swiglu_intermediate_size(dim, multiple_of=m)
        print(f"  D = {dim:>5}: 8D/3 = {8 * dim / 3:>9.2f} -> F = {width:>6}"
              f" (m = {m})")  # fmt: skip

    print(f"\nOne SwiGLU layer, D = {d}, F = {f}")
    shapes = [tuple(t.shape) for t in (x, h, y)]
    print(f"  x {shapes[0]} -> gate, up {shapes[1]} -> down {shapes[2]}")
    print(f"  3 matrices: 3 * D * F = {ffn:,} parameters")
    print(f"  a 4D GELU MLP: 8 * D^2 = {mlp:,} ({ffn / mlp:.3f}x)")

    F_ = LLAMA2_7B["intermediate_size"]
    print(f"\nLlama-2-7B from its config (D = {D}, F = {F_})")
    print(f"  sum(p.numel()) of TinyLlama on the meta device: {counted:,}")
    for name in ("embeddings", "attention", "ffn", "norms", "head"):
        value = getattr(parts, name)
        print(f"  {name:<11} {value:>15,}  {value / parts.total:6.1%}")
    L = LLAMA2_7B["num_hidden_layers"]
    attn, ffn_layer = parts.attention // L, parts.ffn // L
    print(f"  one layer   {parts.per_layer:>15,}")
    print(f"    attention {attn:>15,}")
    print(f"    FFN       {ffn_layer:>15,}")
    print(f"  FFN share of a layer: {parts.ffn_share_of_block:.1%}")

    print(f"\nLlama-3-8B-shaped: V = {llama3['vocab_size']:,}, F = {wider:,},"
          f" {llama3['num_key_value_heads']} KV heads")  # fmt: skip
    print(f"  total {parts3.total:,} ({parts3.total - parts.total:+,})")
    for name in ("embeddings", "attention", "ffn", "head"):
        delta = getattr(parts3, name) - getattr(parts, name)
        print(f"  {name:<11} {delta:>+15,}")
