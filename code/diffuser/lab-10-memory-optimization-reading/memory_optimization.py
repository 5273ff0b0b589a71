"""Lab 10 · Memory Optimization Reading.

Run: python memory_optimization.py

Each memory knob of a pipeline acts on one named state: attention's
scores (which a fused kernel never stores, and diffusers' attention slicing
stores one slice of heads at a time), the VAE decoder's activations (cut
into samples or tiles), and the weights (moved off the device between uses).
Each is measured here on CPU, next to its difference from the plain
computation, and then priced for Wan 2.1 14B, where the weights, not the
scores, set the peak.
"""

import torch
from torch.nn.functional import scaled_dot_product_attention as sdpa

from infralens.attention import naive_attention, sliced_attention
from infralens.calculators import attention_cost, dit_flops, latent_tokens
from infralens.families import get_model
from infralens.memory import (
    blended_tiled_decode,
    peak_tensor_bytes,
    plan_offload,
    tiled_decode,
    wan21_t2v_components,
)
from infralens.nets import TinyConvDecoder

# [1] Setup / contract
torch.manual_seed(0)
torch.set_grad_enabled(False)  # inference, as in a pipeline's __call__
q, k, v = torch.randn(3, 2, 4, 1024, 32).unbind(0)  # (B, h, S, d): CFG batch
auto = q.shape[1] // 2  # diffusers' "auto" slice: half the heads
decoder = TinyConvDecoder(latent_channels=4, width=16).eval()  # x4 pixels
z = torch.randn(2, 4, 32, 48)  # (B, C, H', W'): two latents to decode
r = decoder.receptive_radius  # latent cells that can reach one pixel

# [2] Main transition
scores = q @ k.transpose(-2, -1) / 32**0.5  # (B, h, S, S): what naive stores
out = scores.softmax(dim=-1) @ v  # (B, h, S, d); probabilities alive too
sliced = sliced_attention(q, k, v, slice_size=auto)  # 2 of 8 rows at a time
fused = sdpa(q, k, v)  # PyTorch's fused kernel: no score tensor returned
full = decoder(z)  # (B, 3, 4H', 4W')
per_sample = torch.cat([decoder(x) for x in z.split(1)])  # VAE slicing
tiled = tiled_decode(decoder, z, tile=8, halo=r)  # halo >= radius: exact
blended = blended_tiled_decode(decoder, z, tile=8)  # diffusers' seams
parts = wan21_t2v_components(dtype="bf16")  # text encoder, DiT, VAE
encoder, dit, vae = (c.name for c in parts)  # DiffSynth names: dit for the DiT
schedule = [encoder] * 2 + [dit] * (50 * 2) + [vae]  # WanPipeline defaults
plans = {
    s: plan_offload(parts, schedule, strategy=s)
    for s in ("resident", "model", "layer")
}

# [3] Interview hook
peak = {
    "naive": peak_tensor_bytes(lambda: naive_attention(q, k, v)),
    "sliced": peak_tensor_bytes(
        lambda: sliced_attention(q, k, v, slice_size=auto)
    ),
    "sdpa": peak_tensor_bytes(lambda: sdpa(q, k, v)),  # output + logsumexp
    "full": peak_tensor_bytes(lambda: decoder(z)),
    "sliced vae": peak_tensor_bytes(
        lambda: torch.cat([decoder(x) for x in z.split(1)])
    ),
    "tiled": peak_tensor_bytes(
        lambda: tiled_decode(decoder, z, tile=8, halo=r)
    ),
}
wan = get_model("wan2.1-t2v-14b")  # 40 heads of 128, FFN 13824
n = latent_tokens("wan2.1", height=480, width=832, frames=81).tokens
naive_scores = attention_cost(
    tokens=n, heads=wan["num_heads"], head_dim=wan["head_dim"]
).naive_peak_bytes
ffn_hidden = n * wan["ffn_dim"] * 2  # (1, N, 13824) bf16: one block's widest
call = dit_flops("wan2.1-t2v-14b", height=480, width=832, frames=81)
# [end]

if __name__ == "__main__":
    MiB, GiB = 2**20, 2**30
    print(f"scores {tuple(scores.shape)} = {scores.nbytes / MiB:.1f} MiB")
    rows_bh = q.shape[0] * q.shape[1]
    print(
        f"diffusers' 'auto' slice: {auto} of the {rows_bh} (batch x head) rows"
    )
    print(f"receptive radius of the decoder: {r} latent cells\n")
    print("Measured peak of new tensors (CPU, float32)")
    rows = [
        ("attention, naive", "naive", out, out),
        (f"attention, sliced by {auto} rows", "sliced", sliced, out),
        ("F.scaled_dot_product_attention", "sdpa", fused, out),
        ("VAE decode, whole batch", "full", full, full),
        ("VAE slicing, one sample", "sliced vae", per_sample, full),
        (f"VAE tiling, 8 + halo {r}", "tiled", tiled, full),
    ]
    print(f"  {'knob':<32}{'peak MiB':>9}{'max |diff|':>12}")
    for name, key, got, ref in rows:
        diff = (got - ref).abs().max().item()
        print(f"  {name:<32}{peak[key] / MiB:>9.1f}{diff:>12.1e}")
    err = (blended - full).abs().max().item()
    print(f"  {'VAE tiling, blended (no halo)':<32}{'':>9}{err:>12.1e}")

    print("\nWan 2.1 14B, 480x832, 81 frames, bf16: the size of each state")
    weights = {c.name: c.total_bytes for c in parts}
    print(f"  DiT weights                      {weights[dit] / GiB:8.1f} GiB")
    print(f"  one block's FFN hidden state     {ffn_hidden / GiB:8.2f} GiB")
    naive = f"{naive_scores / GiB:8.1f} GiB (fused: none)"
    print(f"  naive scores + softmax, a layer  {naive}")
    work = f"{call.total / 1e15:8.3f} PFLOP, {call.attention_share:.0%}"
    print(f"  one DiT call                     {work} attention")

    print("\nOffload, 50 steps x 2 CFG passes of the DiT")
    head = f"{'peak GiB':>9}{'moved GiB':>11}{'per DiT call':>14}"
    print(f"  {'strategy':<10}{head}")
    for name, p in plans.items():
        per_call = p.moved_per_call(dit) / GiB
        moved = p.moved_bytes / GiB
        peak_gib = p.peak_bytes / GiB
        print(f"  {name:<10}{peak_gib:>9.1f}{moved:>11.1f}{per_call:>14.1f}")
