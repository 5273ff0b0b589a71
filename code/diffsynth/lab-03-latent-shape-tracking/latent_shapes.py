"""Lab 03 · Latent Shape Tracking. Run: python latent_shapes.py

One request (batch 1, 81 frames, 480x832) becomes a different latent in every
model family: the VAE decides channels, spatial shrink and, for video,
temporal shrink. The latent is the state the denoiser and scheduler update.
"""

import math

import torch

from infralens.diffusion import LATENT_FAMILIES, latent_shape

# [1] Setup / contract
batch, frames, height, width = 1, 81, 480, 832  # a Wan 2.1 480p request
wan = LATENT_FAMILIES["wan2.1"]  # 16 channels, s = 8, t_f = 4

# [2] Main transition
shape = latent_shape(
    "wan2.1", height=height, width=width, frames=frames, batch=batch
)  # (B, C, F', H', W')
latents = torch.randn(shape)  # the loop state the scheduler updates
B, C, F_lat, H_lat, W_lat = latents.shape
# causal VAE: the first frame alone, then groups of t_f = 4 frames
assert F_lat == 1 + (frames - 1) // wan.temporal_factor
assert H_lat == height // wan.spatial_factor
assert W_lat == width // wan.spatial_factor
# the sketch this lab was specified from keeps frames unchanged (wrong)
seed_rule = (batch, C, frames, height // 8, width // 8)

# [3] Interview hook
# Wan's DiT patchifies (1, 2, 2): the sequence length attention sees
tokens = F_lat * (H_lat // 2) * (W_lat // 2)
# fold time next to batch for 2-D layers: (B, C, F', H', W') -> (B*F', ...)
per_frame = latents.permute(0, 2, 1, 3, 4)  # (B, F', C, H', W')
per_frame = per_frame.reshape(B * F_lat, C, H_lat, W_lat)  # (B*F', C, H', W')
# [end]

AXES = ("B batch", "C channels", "F' latent frames", "H' height", "W' width")

if __name__ == "__main__":
    print(f"Request: batch={batch}, frames={frames}, {height}x{width}\n")
    head = f"{'family':<13} {'C':>4} {'s':>3} {'t_f':>4}  {'latent shape':<21}"
    print(f"  {head} {'elements':>10}")
    for name, fam in LATENT_FAMILIES.items():
        video = {"frames": frames} if fam.is_video else {}  # images: none
        s = latent_shape(name, height=height, width=width, **video)
        cols = f"{name:<13} {fam.channels:>4} {fam.spatial_factor:>3}"
        cols += f" {fam.temporal_factor or '-'!s:>4}  {s!s:<21}"
        print(f"  {cols} {math.prod(s):>10,}")

    print("\nWan 2.1 latent, axis by axis")
    for axis, size in zip(AXES, shape, strict=True):
        print(f"  {axis:<17} {size}")
    ratio = math.prod(seed_rule) / latents.numel()
    print(f"\nSeed sketch (frames kept): {seed_rule}, {ratio:.2f}x too big")
    grid = f"{F_lat} x {H_lat // 2} x {W_lat // 2}"
    print(f"Transformer tokens with patch (1, 2, 2): {grid} = {tokens:,}")
    print(f"Per-frame view for 2-D layers: {tuple(per_frame.shape)}")
    print("  (B*F' rows; F' is still time, not batch)")

    print("\nA request the VAE cannot represent is refused, not rounded:")
    try:
        latent_shape("wan2.1", height=height, width=width, frames=80)
    except ValueError as err:
        print(f"  ValueError: {err}")
