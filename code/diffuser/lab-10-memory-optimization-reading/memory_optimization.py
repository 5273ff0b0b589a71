"""Lab 10 · Memory Optimization Reading.

Run: python memory_optimization.py

Each memory knob of a pipeline acts on one named state: the attention
scores are computed in pieces, the VAE's activations are cut into samples
or tiles, the weights leave the GPU between uses. Here each is measured on
CPU, and the output is compared with the plain computation.
"""

import torch
from torch.nn.functional import scaled_dot_product_attention as sdpa

from infralens.memory import (
    TinyConvDecoder,
    blended_tiled_decode,
    chunked_attention,
    naive_attention,
    peak_tensor_bytes,
    plan_offload,
    tiled_decode,
    wan21_t2v_components,
)

# [1] Setup / contract
torch.manual_seed(0)
q, k, v = torch.randn(3, 1, 4, 1024, 32).unbind(0)  # (B, h, S, d) each
decoder = TinyConvDecoder(latent_channels=4, width=16).eval()  # x4 pixels
z = torch.randn(2, 4, 32, 48)  # (B, C, H', W'): two latents to decode
r = decoder.receptive_radius  # latent cells that can reach one pixel

# [2] Main transition
scores = q @ k.transpose(-2, -1) / 32**0.5  # (B, h, S, S): the big state
out = scores.softmax(dim=-1) @ v  # (B, h, S, d)
chunked = chunked_attention(q, k, v, chunk_size=128)  # 128 query rows
fused = sdpa(q, k, v)  # PyTorch's fused kernel
with torch.no_grad():
    full = decoder(z)  # (B, 3, 4H', 4W')
    sliced = torch.cat([decoder(x) for x in z.split(1)])  # VAE slicing
    tiled = tiled_decode(decoder, z, tile=8, halo=r)  # halo: exact
    blended = blended_tiled_decode(decoder, z, tile=8)  # diffusers-style
parts = wan21_t2v_components(dtype="bf16")  # text encoder, DiT, VAE
schedule = ["text_encoder"] * 2 + ["transformer"] * (50 * 2) + ["vae"]
plans = {
    s: plan_offload(parts, schedule, strategy=s)
    for s in ("resident", "model", "layer")
}

# [3] Interview hook
with torch.no_grad():
    peak = {
        "naive": peak_tensor_bytes(lambda: naive_attention(q, k, v)),
        "chunked": peak_tensor_bytes(
            lambda: chunked_attention(q, k, v, chunk_size=128)
        ),
        "sdpa": peak_tensor_bytes(lambda: sdpa(q, k, v)),
        "full": peak_tensor_bytes(lambda: decoder(z)),
        "sliced": peak_tensor_bytes(
            lambda: torch.cat([decoder(x) for x in z.split(1)])
        ),
        "tiled": peak_tensor_bytes(
            lambda: tiled_decode(decoder, z, tile=8, halo=r)
        ),
    }
# [end]

if __name__ == "__main__":
    MiB, GiB = 2**20, 2**30
    print(f"scores {tuple(scores.shape)} = {scores.nbytes / MiB:.1f} MiB")
    print(f"receptive radius of the decoder: {r} latent cells\n")
    print("Measured peak of new tensors (CPU, float32)")
    rows = [
        ("attention, naive", "naive", out, out),
        ("attention, 128-row chunks", "chunked", chunked, out),
        ("F.scaled_dot_product_attention", "sdpa", fused, out),
        ("VAE decode, whole batch", "full", full, full),
        ("VAE slicing, one sample", "sliced", sliced, full),
        (f"VAE tiling, 8 + halo {r}", "tiled", tiled, full),
    ]
    print(f"  {'knob':<32}{'peak MiB':>9}{'max |diff|':>12}")
    for name, key, got, ref in rows:
        diff = (got - ref).abs().max().item()
        print(f"  {name:<32}{peak[key] / MiB:>9.1f}{diff:>12.1e}")
    err = (blended - full).abs().max().item()
    print(f"  {'VAE tiling, blended (no halo)':<32}{'':>9}{err:>12.1e}")
    print("\nWan 2.1 14B in bf16: 50 steps x 2 CFG calls of the DiT")
    head = f"{'peak GiB':>9}{'moved GiB':>11}{'per DiT call':>14}"
    print(f"  {'strategy':<10}{head}")
    for name, p in plans.items():
        per_call = p.moved_per_call("transformer") / GiB
        moved = p.moved_bytes / GiB
        print(
            f"  {name:<10}{p.peak_bytes / GiB:>9.1f}{moved:>11.1f}"
            f"{per_call:>14.1f}"
        )
