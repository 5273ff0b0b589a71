"""Lab 10 · Quantization Reading Lab. Run: python quantization_plan.py

Weight-only quantization stores each weight in 8 or 4 bits with a 16-bit
scale per row or per group of 128, and dequantizes before the matmul:
fewer bytes to read, the same FLOPs. Activations are harder: one channel
with large values ruins a per-tensor scale. The KV cache quantizes like
weights, one scale per token and head.
"""

import torch

from infralens.calculators import weight_memory
from infralens.transformer import (
    LLAMA2_7B,
    decode_cost,
    llama_param_breakdown,
    quantize_symmetric,
)

# [1] Setup / contract
g = torch.Generator().manual_seed(0)
W = torch.randn(512, 2048, generator=g) * 0.02  # (out, in) a projection
X = torch.randn(64, 2048, generator=g)  # (tokens, in) its input
X_outlier = X.clone()
X_outlier[:, 7] *= 60  # one channel far larger, in every token
K = torch.randn(1, 8, 256, 128, generator=g)  # (B, H_kv, S, Dh) a cache
V = torch.randn(1, 8, 256, 128, generator=g)
q = torch.randn(1, 8, 1, 128, generator=g)  # (B, H, 1, Dh) a decode query


def rel_err(approx, exact):
    return ((approx - exact).norm() / exact.norm()).item()


# [2] Main transition
weights = {  # scheme -> quantized W, error of W, error of X @ W.T
    "int8, per row": quantize_symmetric(W, bits=8, scheme="row"),
    "int4, per row": quantize_symmetric(W, bits=4, scheme="row"),
    "int4, group 128": quantize_symmetric(W, bits=4, scheme="group"),
}
Y = X @ W.T  # (tokens, out) the exact output
weight_rows = {
    name: (qw.nbytes, rel_err(qw.dequantize(), W),
           rel_err(X @ qw.dequantize().T, Y))
    for name, qw in weights.items()
}  # fmt: skip
normal = torch.arange(2048) != 7
acts = {}  # activation int8: error on the 2047 ordinary channels
for name, x in (("no outlier", X), ("outlier x60", X_outlier)):
    for scheme in ("tensor", "row"):
        x_hat = quantize_symmetric(x, bits=8, scheme=scheme).dequantize()
        acts[name, scheme] = rel_err(x_hat[:, normal], x[:, normal])
# SmoothQuant: divide each input channel by s, multiply W's column by s
s = (X_outlier.abs().amax(0) / W.abs().amax(0)).sqrt()  # (in,)
x_s = quantize_symmetric(X_outlier / s, bits=8, scheme="tensor").dequantize()
w_s = quantize_symmetric(W * s, bits=8, scheme="row").dequantize()
y_out = X_outlier @ W.T
x_t = quantize_symmetric(X_outlier, bits=8, scheme="tensor").dequantize()
w_8 = weights["int8, per row"].dequantize()
outputs = {
    "per-tensor X, per-row W": rel_err(x_t @ w_8.T, y_out),
    "smoothed X and W": rel_err(x_s @ w_s.T, y_out),
}
# the KV cache in int8: one scale per (token, head) vector of Dh values
k8 = quantize_symmetric(K, bits=8, scheme="row")
v8 = quantize_symmetric(V, bits=8, scheme="row")
attn = torch.nn.functional.scaled_dot_product_attention
exact = attn(q, K, V)  # (B, H, 1, Dh)
approx = attn(q, k8.dequantize(), v8.dequantize())
kv_err = rel_err(approx, exact)
kv_bytes = {"bf16": 2 * K.numel() * 2, "int8": k8.nbytes + v8.nbytes}

# [3] Interview hook
# one decode step of a 7B model at 4096 cached tokens, batch 1
parts = llama_param_breakdown(**LLAMA2_7B)
P = parts.total - parts.embeddings - parts.norms  # matrices read per step
plans = {
    "bf16 weights, bf16 cache": ("bf16", "bf16"),
    "int8 weights, bf16 cache": ("int8", "bf16"),
    "int4 weights, bf16 cache": ("int4", "bf16"),
    "int4 weights, int8 cache": ("int4", "int8"),
}
steps = {
    plan: decode_cost(params=P, layers=32, heads=32, kv_heads=32,
                      head_dim=128, seq=4096, weight_dtype=w, kv_dtype=kv)
    for plan, (w, kv) in plans.items()
}  # fmt: skip
# [end]


if __name__ == "__main__":
    print(f"Weight-only quantization of W {tuple(W.shape)} (fp32 values)")
    bf16 = weight_memory(params=W.numel(), dtype="bf16").total_bytes
    print(f"  {'scheme':<17} {'bytes':>9} {'vs bf16':>8} {'err(W)':>8}"
          f" {'err(XW^T)':>9}")  # fmt: skip
    for name, (nbytes, e_w, e_y) in weight_rows.items():
        print(f"  {name:<17} {nbytes:>9,} {bf16 / nbytes:>7.2f}x"
              f" {e_w:>8.4f} {e_y:>9.4f}")  # fmt: skip

    print("\nActivation int8, relative error on the ordinary channels")
    for (name, scheme), e in acts.items():
        print(f"  {name:<12} scale per {scheme:<7} {e:.4f}")
    print("Output X W^T with int8 X and int8 W, outlier present:")
    for name, e in outputs.items():
        print(f"  {name:<24} {e:.4f}")

    print(f"\nKV cache {tuple(K.shape)} in int8, a scale per token and head")
    ratio = kv_bytes["bf16"] / kv_bytes["int8"]
    print(f"  bytes: bf16 {kv_bytes['bf16']:,}, int8 {kv_bytes['int8']:,}"
          f" ({ratio:.2f}x smaller)")  # fmt: skip
    print(f"  attention output error: {kv_err:.4f}")

    GiB = 2**30
    base = steps["bf16 weights, bf16 cache"]
    print("\nOne decode step, Llama-2-7B shape, 4096 tokens, batch 1")
    print(f"  {'plan':<26} {'GiB read':>8} {'GFLOPs':>7} {'bytes saved':>11}")
    for plan, c in steps.items():
        print(f"  {plan:<26} {c.bytes / GiB:>8.2f} {c.flops / 1e9:>7.1f}"
              f" {base.bytes / c.bytes:>10.2f}x")  # fmt: skip
