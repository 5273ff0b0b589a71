"""Lab 03 · Latent Shape Tracking. Run: python latent_shapes.py

One request (batch 1, 81 frames, 480x832) becomes a different latent in every
model family: the VAE decides channels, spatial shrink and, for video, temporal
shrink. The latent is the state the denoiser and the scheduler update.
"""

import math

import torch

from infralens.diffusion import LATENT_FAMILIES, latent_shape

# [1] Setup / contract
batch, frames, height, width = 1, 81, 480, 832  # a Wan 2.1 480p text-to-video request
wan = LATENT_FAMILIES["wan2.1"]  # channels 16, spatial factor 8, temporal factor 4

# [2] Main transition
shape = latent_shape("wan2.1", height=height, width=width, frames=frames, batch=batch)  # (B, C, F', H', W')
latents = torch.randn(shape)  # (1, 16, 21, 60, 104) the loop state: what the scheduler updates
B, C, F_lat, H_lat, W_lat = latents.shape
assert F_lat == 1 + (frames - 1) // wan.temporal_factor  # causal VAE: first frame, then groups of 4
assert (H_lat, W_lat) == (height // wan.spatial_factor, width // wan.spatial_factor)
seed_rule = (batch, C, frames, height // 8, width // 8)  # the wrong sketch: frames kept as they are

# [3] Interview hook
tokens = F_lat * (H_lat // 2) * (W_lat // 2)  # Wan's DiT patchifies (1, 2, 2): tokens attention sees
per_frame = latents.permute(0, 2, 1, 3, 4).reshape(B * F_lat, C, H_lat, W_lat)  # (B*F', C, H', W') a view for 2-D ops
# [end]

if __name__ == "__main__":
    print(f"Request: batch={batch}, frames={frames}, height={height}, width={width}\n")
    print(f"  {'family':<13} {'C':>4} {'s':>3} {'t_f':>4}  {'latent shape':<24} {'elements':>10}")
    for name, fam in LATENT_FAMILIES.items():
        kwargs = {"frames": frames} if fam.is_video else {}  # image families take no frames
        s = latent_shape(name, height=height, width=width, batch=batch, **kwargs)
        tf = fam.temporal_factor or "-"
        print(f"  {name:<13} {fam.channels:>4} {fam.spatial_factor:>3} {tf!s:>4}  {s!s:<24} {math.prod(s):>10,}")

    print("\nWan 2.1 latent, axis by axis")
    for axis, size in zip(("B batch", "C channels", "F' latent frames", "H' height", "W' width"), shape, strict=True):
        print(f"  {axis:<17} {size}")
    print(
        f"\nSeed sketch (frames unchanged): {seed_rule}, "
        f"{math.prod(seed_rule) / latents.numel():.2f}x too many elements"
    )
    print(f"Transformer tokens with patch (1, 2, 2): {F_lat} x {H_lat // 2} x {W_lat // 2} = {tokens:,}")
    print(f"Per-frame view for 2-D layers: {tuple(per_frame.shape)} (B*F' rows; F' is still time, not batch)")

    print("\nA request the VAE cannot represent exactly is refused, not rounded:")
    try:
        latent_shape("wan2.1", height=height, width=width, frames=80)
    except ValueError as err:
        print(f"  ValueError: {err}")
