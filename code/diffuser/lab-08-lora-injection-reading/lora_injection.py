"""Lab 08 · LoRA Injection Reading. Run: python lora_injection.py

LoRA keeps a pretrained weight W frozen and learns a rank-r update
s * B @ A next to it (s = alpha / r). B starts at zero, so a new adapter
changes nothing; after training the update can be merged into W.
"""

import torch
from torch import nn

from infralens.adapters import LoRALinear, lora_param_count

# [1] Setup / contract
torch.manual_seed(0)
d_in, d_out, rank, alpha = 64, 48, 4, 8  # a small projection; FLUX: 3072
base = nn.Linear(d_in, d_out)  # W (d_out, d_in), b (d_out,): pretrained
x = torch.randn(2, 16, d_in)  # (B, L, d_in) tokens entering the layer
lora = LoRALinear(base, rank=rank, lora_alpha=alpha)  # freezes W and b
A, B = lora.lora_A, lora.lora_B  # (r, d_in) random, (d_out, r) zeros
noop = torch.equal(lora(x), base(x))  # B = 0: exactly the base output

# [2] Main transition
with torch.no_grad():  # stand-in for training: give B some values
    B.normal_(std=0.1)
s = alpha / rank  # PEFT's scaling = lora_alpha / r
y = lora(x)  # (B, L, d_out)
# the same line in plain torch: W x + b + s * B (A x)
manual = x @ base.weight.T + base.bias + s * (x @ A.T) @ B.T
assert torch.allclose(y, manual, atol=1e-5)
merged = lora.merge()  # nn.Linear with weight W + s * B @ A
merged_ok = torch.allclose(merged(x), y, atol=1e-5)

# [3] Interview hook
delta = lora.delta_weight()  # (d_out, d_in), but rank <= r
delta_rank = int(torch.linalg.matrix_rank(delta))
trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
frozen = not any(p.requires_grad for p in base.parameters())
ranks = (4, 16, 64, 128)  # adapter size on one 3072 x 3072 projection
counts = {r: lora_param_count(3072, 3072, rank=r) for r in ranks}
# [end]

if __name__ == "__main__":
    print("Shapes at each boundary")
    for name, t, note in [
        ("x", x, "tokens (B, L, d_in)"),
        ("W", base.weight, "frozen pretrained weight"),
        ("A", A, "down-projection (r, d_in), trainable"),
        ("B", B, "up-projection (d_out, r), trainable"),
        ("delta", delta, f"s * B @ A, rank {delta_rank} <= r = {rank}"),
        ("y", y, "output (B, L, d_out)"),
    ]:
        print(f"  {name:<6} {tuple(t.shape)!s:<14} {note}")

    ratio = f"{alpha} / {rank} = {lora.scaling}"
    print(f"\nscaling s = lora_alpha / r = {ratio}")
    print(f"new adapter (B = 0) is a no-op: {noop}")
    print(f"merged weight gives the adapter path's output: {merged_ok}")
    print(f"trainable parameters: {trainable}")
    print(f"base W and b frozen: {frozen}")

    full = 3072 * 3072
    print(f"\nOne 3072 x 3072 projection: W has {full:,} parameters")
    print(f"  {'rank':>5} {'LoRA params':>12} {'of W':>8}")
    for r, n in counts.items():
        print(f"  {r:>5} {n:>12,} {n / full:>8.2%}")
